"""The run folder as an artifact: one writer (its lock), a manifest checked on every read, no leftovers
of killed writes, files with the umask's mode."""
import io
import json
import os
import socket
import stat
import subprocess
import sys

import pytest
import torch

import idsf_pyg.io as io_module
from idsf_pyg.errors import RunFolderError
from idsf_pyg.io import file_mode, write_text
from idsf_pyg.logs import console
from idsf_pyg.train.checkpoint import UNSAFE_FILE_ADVICE, read_checkpoint
from idsf_pyg.train.run_folder import MANIFEST, RunFolder, sha256_bytes


def test_what_is_written_reads_back_and_anything_else_is_refused_by_name(tmp_path):
    folder = RunFolder(tmp_path / "run")
    with folder.writing():
        folder.write_text("config.yaml", "run_key: abc\n")
        folder.write_json("results.json", {"a": 1})
    manifest = json.loads((tmp_path / "run" / MANIFEST).read_text())
    assert manifest["files"]["config.yaml"] == sha256_bytes(b"run_key: abc\n")   # an independent digest
    assert manifest["pending"] == {}
    assert folder.read("config.yaml") == b"run_key: abc\n"
    assert folder.read("best.pt") is None                                         # absent, not an error

    (tmp_path / "run" / "results.json").write_text('{"a": 2}\n')                 # an edit
    with pytest.raises(RunFolderError, match=r"results.json: differs from what the run wrote.*experiments.seal"):
        folder.read("results.json")
    (tmp_path / "run" / "topk.csv").write_text("user_id,item_ids\n")             # a file the run never wrote
    with pytest.raises(RunFolderError, match=r"topk.csv: is not listed in manifest.json"):
        folder.read("topk.csv")
    (tmp_path / "run" / MANIFEST).unlink()                                        # an older version's folder
    with pytest.raises(RunFolderError, match=r"no manifest.json, so config.yaml cannot be checked"):
        folder.read("config.yaml")


def test_a_reader_during_a_write_sees_the_old_or_the_new_file_and_both_are_vouched_for(tmp_path, monkeypatch):
    """The manifest lists the new digest as pending before the rename: a reader between the rename and the
    manifest's final update (here: inside os.replace) accepts the new file, and before it the old one."""
    writer, reader = RunFolder(tmp_path), RunFolder(tmp_path)
    seen = []
    real_replace = os.replace

    def replace_and_read(src, dst):
        if str(dst).endswith("results.json"):
            seen.append(reader.read("results.json"))      # before the rename: the old file
            real_replace(src, dst)
            seen.append(reader.read("results.json"))      # after it, manifest not yet final: the new one
        else:
            real_replace(src, dst)

    with writer.writing():
        writer.write_text("results.json", "old")
        monkeypatch.setattr(io_module.os, "replace", replace_and_read)
        writer.write_text("results.json", "new")
    assert seen == [b"old", b"new"]
    assert json.loads((tmp_path / MANIFEST).read_text())["pending"] == {}


def test_a_second_writer_is_refused_at_once_with_the_holder_named(tmp_path):
    with RunFolder(tmp_path).writing():
        with pytest.raises(RunFolderError) as refused:
            with RunFolder(tmp_path).writing():
                pass
    message = str(refused.value)
    assert "another process is writing" in message
    assert f"pid {os.getpid()} on {socket.gethostname()} since " in message
    with RunFolder(tmp_path).writing():   # released: the next writer gets it
        pass


def test_a_dead_holders_record_is_taken_over_with_a_note_and_its_temp_files_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(),
                                                "started": "2026-01-01T00:00:00+00:00", "command": "train"}))
    leftover = tmp_path / ".checkpoint.pt.k3j_x9Qa.tmp"
    leftover.write_bytes(b"half a checkpoint")
    keep = tmp_path / "notes.tmp"                       # not one of atomic_open's names: left alone
    keep.write_text("mine")
    stream = io.StringIO()
    with console(stream), RunFolder(tmp_path).writing(log=tmp_path / "train.log"):   # the package's log
        pass
    notes = stream.getvalue().splitlines()
    assert any(f"took over the run folder from pid {pid}" in n and "no longer running" in n for n in notes), notes
    assert any(".checkpoint.pt.k3j_x9Qa.tmp" in n for n in notes)
    logged = (tmp_path / "train.log").read_text()        # and to the run's own log, once the lock is held
    assert f"took over the run folder from pid {pid}" in logged and ".checkpoint.pt.k3j_x9Qa.tmp" in logged
    assert not leftover.exists() and keep.exists()
    assert (tmp_path / ".lock").read_text() == ""       # a clean exit leaves no holder record


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_written_files_get_the_mode_open_would_give(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_text(tmp_path / "atomic.txt", "x")
        with open(tmp_path / "plain.txt", "w") as f:   # the reference: what open() gives
            f.write("x")
        assert file_mode() == 0o666 & ~umask
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "atomic.txt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o666 & ~umask


class NotATensor:
    pass


def test_a_file_with_pickled_code_is_refused_with_safe_advice_whole(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": 1, "thing": NotATensor()}, path)
    with pytest.raises(RunFolderError) as refused:
        read_checkpoint(path)
    message = str(refused.value)
    assert UNSAFE_FILE_ADVICE in message and "unless you trust its source" in message
    assert "WeightsUnpickler" not in message             # torch's own advice (re-run unsafely) is not passed on


def test_checkpoint_fields_are_checked_before_use(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": 1, "key": "k", "model": {}}, path)
    with pytest.raises(RunFolderError, match=r"checkpoint.pt, field 'optimizer': missing"):
        read_checkpoint(path)


def test_writes_outside_the_lock_are_a_bug_not_a_silent_mix(tmp_path):
    with pytest.raises(RuntimeError, match="without holding the run folder's lock"):
        RunFolder(tmp_path).write_text("config.yaml", "x")
