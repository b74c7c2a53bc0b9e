"""A command with --jobs N killed by SIGTERM (sent to it alone, not its process group) must take its workers with it.

A surviving worker goes on training, holding its run's lock and a core, while the user restarts the command;
the check is that every run lock the workers held is free again once the command has ended.
"""
import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Sequence

import pytest

from tests.time_limits import hang_guard

ROOT = Path(__file__).resolve().parents[1]
CHILDREN = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
needs_proc_children = pytest.mark.skipif(
    not CHILDREN.exists(), reason="needs Linux /proc/<pid>/task/<pid>/children to find (and clean up) the workers")
ENDLESS = "--epochs 100000 --patience 100000"   # runs that outlast the test


def lock_is_free(path: Path) -> bool:
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def assert_sigterm_ends_workers(argv: Sequence[str], store: Path, runs: int = 2) -> None:
    """Starts ``argv`` (endless runs on ``runs`` workers into ``store``), waits until every worker trains,
    sends SIGTERM to the command alone and asserts that the workers' run locks are freed."""
    cmd = subprocess.Popen(list(argv), cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list = []
    try:
        deadline = time.monotonic() + hang_guard(180)
        logs: list = []
        while time.monotonic() < deadline and cmd.poll() is None:
            logs = [p for p in store.glob("*/*/train.log") if "epoch" in p.read_text()]
            if len(logs) == runs:
                break
            time.sleep(0.5)
        assert len(logs) == runs, f"all {runs} runs should be training (command exit code {cmd.poll()})"
        children = [int(p) for p in Path(f"/proc/{cmd.pid}/task/{cmd.pid}/children").read_text().split()]
        cmd.send_signal(signal.SIGTERM)
        cmd.wait(timeout=hang_guard(30))
        locks = sorted(store.glob("*/*.lock"))
        assert len(locks) == runs
        deadline = time.monotonic() + hang_guard(30)
        while time.monotonic() < deadline and not all(lock_is_free(p) for p in locks):
            time.sleep(0.5)
        assert all(lock_is_free(p) for p in locks), "a worker kept training after its command was killed"
    finally:
        if cmd.poll() is None:
            cmd.kill()
        for pid in children:  # never leave an endless worker behind, even when the test fails
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
