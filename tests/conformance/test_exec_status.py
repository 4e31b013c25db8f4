"""`exec` in a running container returns the exit status of the process it started, as runc does:
its code, or 128+N when signal N killed it. Also when the scheduler runs the new process ahead of
the runtime's own helper processes (forced here with strace delaying the return of every fork in
the parent, so the child always gets there first). berth-runtime once returned 255 then: it
stopped reading at the process's "ready" before its parent's "pid" had come (fixed in 266d4b3).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from oci_runtimes import OCIRuntime, unique_cgroups_path, unique_id

# Every fork/clone returns to its parent 100 ms late; the child runs on at once.
STRACE_SLOW_FORK = ("-f", "-qq", "-o", "/dev/null", "-e", "trace=clone,clone3",
                    "-e", "inject=clone,clone3:delay_exit=100000")


@pytest.fixture
def running(oci_runtime: OCIRuntime, bundle) -> Iterator[str]:
    b = bundle(["sleep", "60"], linux={"cgroupsPath": unique_cgroups_path()})
    cid = unique_id("exec")
    try:
        started = oci_runtime.run_detached(cid, b)
        assert started.returncode == 0, started.describe()
        yield cid
    finally:
        oci_runtime.delete(cid)


@pytest.mark.parametrize("script, status", [("exit 0", 0), ("exit 7", 7),
                                            ("kill -KILL $$", 128 + 9)])
def test_exec_returns_the_process_status(oci_runtime: OCIRuntime, running: str,
                                         script: str, status: int) -> None:
    res = oci_runtime.exec(running, "sh", "-c", script)
    assert res.returncode == status, res.describe()


def _slow_fork(rt: OCIRuntime, tmp: Path) -> OCIRuntime:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (it delays the runtime's forks here)")
    wrapper = tmp / f"slow-fork-{rt.name}"
    wrapper.write_text(f"#!/bin/sh\nexec {strace} {' '.join(STRACE_SLOW_FORK)} "
                       f"{rt.binary} \"$@\"\n")
    wrapper.chmod(0o755)
    return replace(rt, binary=wrapper)


def test_exec_status_when_the_process_runs_ahead_of_the_runtime(
        oci_runtime: OCIRuntime, running: str, tmp_path: Path) -> None:
    slow = _slow_fork(oci_runtime, tmp_path)
    res = slow.exec(running, "sh", "-c", "exit 7", timeout=60)
    assert res.returncode == 7, res.describe()
