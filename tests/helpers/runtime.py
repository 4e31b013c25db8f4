"""Driving `berth-runtime` (or any runtime with runc's command line) from a test.

    RT(exe, root)                 the runner: rt("create", "--bundle", b, "c1") -> CompletedProcess
      rt.run_ok(bundle, cid)      `run` a bundle, assert exit 0, return its stdout
      rt.state(cid) / status / wait_status(cid, want)
      rt.delete_all()             delete --force every container under --root
    rt                            pytest fixture: an RT over the test's own --root; deletes what a
                                  failed test left (import it into a test module to use it)
    facts(text)                   "key=value" lines -> dict (a probe prints one fact a line)
    status_fields(text)           /proc/PID/status text -> {field: value}
    processes_naming(word)        live processes whose command line contains `word`
    ConsoleServer(path)           a --console-socket server: receives the pty master (SCM_RIGHTS)
                                  and collects what the container writes to its terminal
    cgroup_dirs_named(name)       every directory under /sys/fs/cgroup called `name`
    controller_dir(pid, ctrl)     host path of the v1 cgroup of `pid` for controller `ctrl`
    assert_nothing_left(rt, cid, bundle)
                                  no state dir, cgroup, process or mount of a container
    remove_leftovers(rt, cid)     clean up after a runtime bug (a create that had to be killed)

Stdio goes to files, not pipes: a created container inherits the caller's stdio (as with runc),
so a pipe would stay open until the container exits.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CGROUP_ROOT = Path("/sys/fs/cgroup")


class RT:
    """berth-runtime with a --root of the test's own."""

    def __init__(self, exe: Path, root: Path) -> None:
        self.exe = exe
        self.root = root

    def __call__(self, *args: str, check: bool = True,
                 timeout: float = 30) -> subprocess.CompletedProcess[str]:
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            code = subprocess.run([str(self.exe), "--root", str(self.root), *args],
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                  timeout=timeout).returncode
            out.seek(0)
            err.seek(0)
            proc = subprocess.CompletedProcess(list(args), code, out.read(), err.read())
        if check and proc.returncode != 0:
            raise AssertionError(f"berth-runtime {' '.join(args)} -> {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def run_ok(self, bundle: Path, cid: str, timeout: float = 30) -> str:
        """`run` the bundle to its end; it must exit 0. Its stdout."""
        return self("run", "--bundle", str(bundle), cid, timeout=timeout).stdout

    def state(self, cid: str) -> dict[str, Any]:
        return json.loads(self("state", cid).stdout)

    def status(self, cid: str) -> str:
        return self.state(cid)["status"]

    def wait_status(self, cid: str, want: str, timeout: float = 5) -> None:
        deadline = time.monotonic() + timeout
        while self.status(cid) != want:
            assert time.monotonic() < deadline, f"{cid} never became {want}"
            time.sleep(0.02)

    def delete_all(self) -> None:
        for name in (os.listdir(self.root) if self.root.exists() else []):
            if not name.startswith("."):
                self("delete", "--force", name, check=False)


@pytest.fixture
def rt(berth_env: Any, berth_runtime: Path) -> Iterator[RT]:
    runner = RT(berth_runtime, berth_env.run / "runtime")
    yield runner
    runner.delete_all()  # a failed assertion must not leave a container behind


def facts(text: str) -> dict[str, str]:
    """Lines "key=value" -> {key: value}; other lines are ignored; values keep their spaces."""
    out: dict[str, str] = {}
    for line in text.replace("\r\n", "\n").splitlines():
        key, sep, value = line.partition("=")
        if sep and key and " " not in key:
            out[key] = value
    return out


def status_fields(text: str) -> dict[str, str]:
    """/proc/PID/status text -> {field: value}."""
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


class ConsoleServer:
    """A unix socket for --console-socket. The runtime connects and sends the pty master with
    SCM_RIGHTS; a thread takes it and reads everything the container writes until the
    terminal closes (EIO once no slave is open)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(1)
        self.sock.settimeout(20)
        self.output = bytearray()
        self.got_fd = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
            with conn:
                _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
            assert len(fds) == 1, f"expected one fd from the runtime, got {fds}"
            master = fds[0]
            self.got_fd.set()
            try:
                while True:
                    try:
                        data = os.read(master, 65536)
                    except OSError as e:
                        if e.errno == errno.EIO:
                            break
                        raise
                    if not data:
                        break
                    self.output += data
            finally:
                os.close(master)
        except BaseException as e:  # noqa: BLE001 - reported by wait()
            self.error = e
        finally:
            self.done.set()

    def wait(self, timeout: float = 20) -> str:
        assert self.done.wait(timeout), "the container's terminal never closed"
        if self.error is not None:
            raise self.error
        return self.output.decode(errors="replace").replace("\r\n", "\n")

    def close(self) -> None:
        self.sock.close()


def cgroup_dirs_named(name: str, root: Path = CGROUP_ROOT, depth: int = 6) -> list[str]:
    """Directories called `name` anywhere under /sys/fs/cgroup (to `depth` levels)."""
    found = []

    def walk(d: str, level: int) -> None:
        try:
            with os.scandir(d) as it:
                subdirs = [e for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            return
        for e in subdirs:
            if e.name == name:
                found.append(e.path)
            if level < depth:
                walk(e.path, level + 1)

    walk(str(root), 1)
    return found


def controller_dir(pid: int, controller: str) -> Path:
    """Host directory of the v1 cgroup `pid` is in for `controller` (from /proc/PID/cgroup)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if controller in ctrls.split(","):
            return CGROUP_ROOT / controller / path.lstrip("/")
    raise AssertionError(f"pid {pid} is in no {controller} cgroup")


def processes_naming(word: str) -> list[str]:
    """Command lines of live processes that contain `word` (not this process)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        if word in cmd:
            out.append(f"{entry}: {cmd}")
    return out


def remove_leftovers(rt: RT, cid: str) -> None:
    """For a test of a known runtime bug that leaves a container behind (a runtime killed
    mid-create): kill what is in its cgroups, remove them (and an emptied shared parent named
    berth) and its state directory, so the leak check reports the bug's test only."""
    import shutil
    import signal
    dirs = sorted(cgroup_dirs_named(cid), key=len, reverse=True)
    for d in dirs:
        try:
            for pid in Path(d, "cgroup.procs").read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        except OSError:
            pass
    for d in dirs:
        for _ in range(100):
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)
        parent = os.path.dirname(d)
        if os.path.basename(parent) == "berth":
            try:
                os.rmdir(parent)
            except OSError:
                pass
    shutil.rmtree(rt.root / cid, ignore_errors=True)


def assert_nothing_left(rt: RT, cid: str, bundle: Path | None = None) -> None:
    """After a failed create: no state, no cgroup, no process, no mount of the container."""
    assert not (rt.root / cid).exists(), f"state dir {rt.root / cid} left behind"
    listed = json.loads(rt("list", "--format", "json").stdout)
    assert cid not in [c["id"] for c in listed]
    assert cgroup_dirs_named(cid) == [], f"cgroups left: {cgroup_dirs_named(cid)}"
    assert processes_naming(cid) == [], f"processes left: {processes_naming(cid)}"
    if bundle is not None:
        mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                  if str(bundle) in line]
        assert mounts == [], f"mounts left: {mounts}"
