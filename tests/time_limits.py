"""Hang guards for tests that wait on other processes: limits, never expectations of speed.

A test that runs a subprocess or polls for a file needs a limit only so that a bug which hangs ends the
test instead of the CI run. The limits are generous and scale with ``IDSF_TEST_TIME_SCALE`` (default 10),
so that the suite passes on a loaded machine (torch's matrix products run up to ~25x slower when other
jobs share the cores). No test asserts how fast something ran; benchmarks print figures instead.
"""
import os

SCALE = float(os.environ.get("IDSF_TEST_TIME_SCALE", "10"))


def hang_guard(seconds: float) -> float:
    """``seconds`` (what the wait takes on an idle machine, with room) scaled for a loaded one."""
    return seconds * SCALE
