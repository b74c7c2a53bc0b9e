"""A run folder: its files, its one writer, and the manifest every reader checks.

A run folder holds::

    config.yaml      the resolved configuration and its key (written before training)
    checkpoint.pt    the latest checkpoint while the run is going on (removed once it has finished)
    best.pt          the best validation state (weights only), once finished
    results.json     config, key, seed, data fingerprint, software, hardware, the machines it trained on,
                     curve, val and test metrics
    topk.csv         each test user's top-20 items (with save_topk)
    manifest.json    the run key and the sha256 of each file above, as the run wrote it
    .lock            the lock of the one process writing the folder, naming it (pid, host, start, command)

**One writer.** :meth:`RunFolder.writing` holds an exclusive ``flock`` on ``.lock`` for as long as a run
writes the folder; a second writer is refused at once, with the holder named. The operating system drops
the lock of a process that dies, so a lock is never stale for ``flock``; the holder's record it leaves is
reported ("took over from pid N, which is no longer running") and so are the temporary files its killed
writes left (:func:`~idsf_pyg.io.remove_temp_files`), which are removed.

**Checked on every read.** Every file is written through :meth:`RunFolder.write`, which records its
digest in ``manifest.json`` (as *pending* before the rename, as *the* digest after it, so that a reader
or a crash between the two steps never sees a file the manifest does not vouch for). Readers
(:meth:`RunFolder.read`) compare the bytes they parse with the manifest and refuse a file that is not
the one the run wrote, naming it; a person who edited a folder on purpose re-seals it with
``python -m experiments.seal DIR`` (which checks the run keys first).
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import math
import os
import socket
import sys
from pathlib import Path
from typing import Any, Callable, Dict, IO, Iterator, Optional

import yaml

from ..errors import RunFolderError
from ..logs import log_file, logger
from ..io import remove_temp_files, sha256_file, writable_folder, write_json, write_with

CONFIG, CHECKPOINT, BEST, RESULTS, TOPK = "config.yaml", "checkpoint.pt", "best.pt", "results.json", "topk.csv"
MANIFEST, LOCK = "manifest.json", ".lock"
#: The run's log (plain lines with times, appended by every session that wrote the folder); not sealed.
LOG = "train.log"
#: The validation curve as a table (epoch, seconds, losses by part, validation metrics), rewritten after every
#: validation so that a running run can be plotted; derived from the run's curve, not sealed.
CURVES = "curves.csv"
#: The files a manifest vouches for.
SEALED = (CONFIG, CHECKPOINT, BEST, RESULTS, TOPK)
MANIFEST_FORMAT = 1
SEAL_COMMAND = "python -m experiments.seal"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def describe_holder(info: Dict[str, Any]) -> str:
    if not info:
        return "another process (it has not recorded itself yet)"
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')} since {info.get('started', '?')}"
            + (f" ({info['command']})" if info.get("command") else ""))


class RunFolder:
    """The files of one run (see the module docstring)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock_file: Optional[IO[str]] = None

    def file(self, name: str) -> Path:
        return self.path / name

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ------------------------------------------------------------------------------------ the writer
    @contextlib.contextmanager
    def writing(self, log: Optional[Path] = None) -> Iterator["RunFolder"]:
        """Holds the folder's lock while the block runs: the one writer. Refuses at once when another process
        holds it; reports a holder that died and removes the temporary files its killed writes left. With
        ``log``, the log lines of the block (those notes first) are also appended to that file
        (:func:`~idsf_pyg.logs.log_file`), which is opened only once the lock is held."""
        writable_folder(self.path, "--out")
        lock_path = self.file(LOCK)
        f = open(lock_path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(f)
            f.close()
            raise RunFolderError(f"{self.path}: another process is writing this run folder: "
                                 f"{describe_holder(holder)}; wait for it to finish, or choose another --out"
                                 ) from None
        except OSError as e:
            f.close()
            raise RunFolderError(f"{lock_path}: cannot lock the run folder ({e.strerror or e}); the file "
                                 "system must support flock") from None
        try:
            with (log_file(log) if log is not None else contextlib.nullcontext()):
                previous = _read_holder(f)
                if previous:
                    alive = previous.get("host") == socket.gethostname() and isinstance(previous.get("pid"), int) \
                        and previous["pid"] != os.getpid() and _pid_alive(previous["pid"])
                    state = "still running but no longer holding the lock" if alive else "no longer running"
                    logger.info(f"  note: took over the run folder from {describe_holder(previous)}, {state}")
                for tmp in remove_temp_files(self.path):
                    logger.info(f"  note: removed {tmp.name}, left by a write that was killed")
                f.seek(0)
                f.truncate()
                json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                           "command": " ".join(sys.argv)[:300]}, f)
                f.flush()
                self._lock_file = f
                yield self
        finally:
            self._lock_file = None
            with contextlib.suppress(OSError):
                f.seek(0)
                f.truncate()  # a clean exit leaves no holder record
                f.flush()
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()

    def _require_lock(self) -> None:
        if self._lock_file is None:
            raise RuntimeError(f"{self.path}: written without holding the run folder's lock (use writing())")

    # ---------------------------------------------------------------------------------- sealed writes
    def manifest(self) -> Optional[Dict[str, Any]]:
        """The manifest, or ``None`` when there is none; :class:`RunFolderError` when it is unreadable."""
        path = self.file(MANIFEST)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise RunFolderError(f"{path}: unreadable manifest ({e}); if you trust the folder, re-seal it: "
                                 f"{SEAL_COMMAND} {self.path}") from None
        if not (isinstance(obj, dict) and obj.get("format") == MANIFEST_FORMAT and isinstance(obj.get("files"), dict)
                and isinstance(obj.get("pending", {}), dict)):
            raise RunFolderError(f"{path}: not an idsf-pyg manifest of format {MANIFEST_FORMAT}; if you trust the "
                                 f"folder, re-seal it: {SEAL_COMMAND} {self.path}")
        return obj

    def _update_manifest(self, change: Callable[[Dict[str, Any]], None]) -> None:
        self._require_lock()
        current = self.manifest() or {"format": MANIFEST_FORMAT, "run_key": None, "files": {}, "pending": {}}
        current.setdefault("pending", {})
        change(current)
        write_json(self.file(MANIFEST), current)

    def set_run_key(self, key: str) -> None:
        self._update_manifest(lambda m: m.__setitem__("run_key", key))

    def write(self, name: str, writer: Callable[[IO[bytes]], None]) -> None:
        """Writes ``name`` atomically through ``writer(binary file)`` and records its digest."""
        self._require_lock()
        digest: Dict[str, str] = {}

        def before_replace(tmp: Path) -> None:
            digest["sha"] = sha256_file(tmp)
            self._update_manifest(lambda m: m["pending"].__setitem__(name, digest["sha"]))

        write_with(self.file(name), writer, before_replace=before_replace)

        def commit(m: Dict[str, Any]) -> None:
            m["files"][name] = digest["sha"]
            m["pending"].pop(name, None)
        self._update_manifest(commit)

    def write_text(self, name: str, text: str) -> None:
        self.write(name, lambda f: f.write(text.encode("utf-8")))

    def write_json(self, name: str, obj: Any) -> None:
        self.write_text(name, json.dumps(obj, indent=2, default=str) + "\n")

    def remove(self, name: str) -> None:
        """Deletes ``name`` and its manifest entry (in that order: a listed file that is gone reads as absent)."""
        self._require_lock()
        self.file(name).unlink(missing_ok=True)

        def drop(m: Dict[str, Any]) -> None:
            m["files"].pop(name, None)
            m["pending"].pop(name, None)
        if self.file(MANIFEST).exists():
            self._update_manifest(drop)

    def clear(self) -> None:
        for name in (RESULTS, CHECKPOINT, BEST, TOPK):
            self.remove(name)
        self.file(CURVES).unlink(missing_ok=True)

    def seal(self) -> Dict[str, str]:
        """Records the digests of the files as they are now (``experiments.seal``, after checking them)."""
        self._require_lock()
        files = {name: sha256_file(self.file(name)) for name in SEALED if self.file(name).is_file()}
        key = None
        if self.file(CONFIG).is_file():
            key = parse_config(self.file(CONFIG).read_bytes(), self.file(CONFIG))["run_key"]
        write_json(self.file(MANIFEST), {"format": MANIFEST_FORMAT, "run_key": key, "files": files, "pending": {}})
        return files

    # ------------------------------------------------------------------------------------ checked reads
    def read(self, name: str) -> Optional[bytes]:
        """The bytes of ``name`` if the manifest vouches for them; ``None`` if the file is absent.

        Raises :class:`RunFolderError` naming the file when it is not the one the run wrote (changed, or
        not in the manifest) or when the folder has no manifest."""
        path = self.file(name)
        before = self.manifest()
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise RunFolderError(f"{path}: cannot read ({e.strerror or e})") from None
        if before is None:
            raise RunFolderError(f"{self.path}: no {MANIFEST}, so {name} cannot be checked (the folder was written "
                                 f"by an older idsf-pyg, or the manifest was deleted); if you trust its files, "
                                 f"seal it: {SEAL_COMMAND} {self.path}")
        sha = sha256_bytes(data)
        after = self.manifest() or before  # a write may have finished between the two reads
        vouched = {m.get(part, {}).get(name) for m in (before, after) for part in ("files", "pending")}
        if sha not in vouched:
            what = "is not listed in" if vouched == {None} else "differs from what the run wrote, by"
            raise RunFolderError(f"{path}: {what} {MANIFEST} (sha256 {sha[:12]}); the folder was edited or "
                                 f"mixed with another run's files. If you edited it on purpose, re-seal it: "
                                 f"{SEAL_COMMAND} {self.path}")
        return data

    def read_config(self) -> Optional[Dict[str, Any]]:
        """``config.yaml`` (checked) as ``{"run_key", "config", "key_material"}``, or ``None`` when absent."""
        data = self.read(CONFIG)
        return None if data is None else parse_config(data, self.file(CONFIG))

    def finished(self) -> Optional[Dict[str, Any]]:
        """The checked ``results.json`` of a finished run, or ``None`` when the run has not finished."""
        data = self.read(RESULTS)
        if data is None:
            return None
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise RunFolderError(f"{self.file(RESULTS)}: unreadable results file ({e}); delete it or pass "
                                 "--overwrite") from None
        check_results(obj, self.file(RESULTS))
        return obj


def require_one_run(key: str, recorded: Dict[str, Optional[str]], folder: Path, what: str) -> None:
    """Every run key a folder's files record (``{file name: key}``) must be ``key``, the one ``what`` gives."""
    for name, other in recorded.items():
        if other != key:
            raise RunFolderError(f"{folder / name}: records run key {str(other)[:12]}, but {what} gives {key[:12]}: "
                                 "the folder's files are not of one run (an edit changed what defines the run, "
                                 "or two runs' files were mixed)")


def _read_holder(f: IO[str]) -> Dict[str, Any]:
    try:
        f.seek(0)
        text = f.read()
        obj = json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def parse_config(data: bytes, path: Path) -> Dict[str, Any]:
    """A run folder's ``config.yaml`` as ``{"run_key", "config", "key_material"}``, its fields checked."""
    try:
        obj = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise RunFolderError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(obj, dict):
        raise RunFolderError(f"{path}: must be a mapping with run_key, config and key_material, "
                             f"got a {type(obj).__name__}")
    for field, kind in (("run_key", str), ("config", dict), ("key_material", dict)):
        if not isinstance(obj.get(field), kind):
            raise RunFolderError(f"{path}, field '{field}': missing or not a {kind.__name__}")
    return obj


def check_results(obj: Any, path: Path) -> None:
    """The fields of a results file that tables and readers use, with their types; finite metrics."""
    if not isinstance(obj, dict):
        raise RunFolderError(f"{path}: must be a JSON object, got {type(obj).__name__}")
    for field, kind in (("run_key", str), ("model", str), ("seed", int), ("best_epoch", int), ("epochs_run", int),
                        ("stopped", str), ("val", dict), ("test", dict), ("config", dict), ("seconds", dict),
                        ("feature_sources", dict), ("hardware", dict)):
        if not isinstance(obj.get(field), kind) or isinstance(obj.get(field), bool):
            raise RunFolderError(f"{path}, field '{field}': missing or not a {kind.__name__}")
    for split in ("val", "test"):
        for metric, value in obj[split].items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise RunFolderError(f"{path}, field '{split}.{metric}': must be a finite number, got {value!r}")
    if not obj["test"]:
        raise RunFolderError(f"{path}, field 'test': no metric recorded")
