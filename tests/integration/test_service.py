"""`berth system service` and the `berth` script's fast path through it (cli/service.py,
cli/client.py): what a user sees is what the in-process CLI gives, only sooner."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers.cli import berth

from berth.cli import client

SCRIPT = Path(__file__).resolve().parents[2] / "bin" / "berth"
CLIENT = [sys.executable, str(SCRIPT)]


class Service:
    def __init__(self, run: Path) -> None:
        self.sock = run / "berth.sock"
        self.proc = subprocess.Popen([sys.executable, "-m", "berth.cli.main", "system",
                                      "service"], stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + 30
        while not self.sock.exists():
            assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
            assert time.monotonic() < end, "the service did not listen within 30 s"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def service(berth_env, image: str) -> Iterator[Service]:
    svc = Service(berth_env.run)
    yield svc
    svc.stop()
    assert not svc.sock.exists()


def cli(*args: str, input: bytes | None = None, env: dict[str, str] | None = None,
        cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLIENT, *args], capture_output=True, input=input, timeout=60,
                          env=env, cwd=cwd)


def served_by(svc: Service) -> set[int]:
    """pids of the service's children now (a command it runs shows up here)."""
    path = Path(f"/proc/{svc.proc.pid}/task/{svc.proc.pid}/children")
    return {int(p) for p in path.read_text().split()}


def test_socket_is_private_and_help(service: Service) -> None:
    assert service.sock.stat().st_mode & 0o777 == 0o600
    r = berth("system", "service", "--help")
    assert "Usage:  berth system service" in r.stdout and "BERTH_NO_SERVICE" in r.stdout
    r = berth("system", "service", check=False)  # a second one on the same BERTH_RUN
    assert r.returncode == 1 and "already listens" in r.stderr


def test_exit_codes_and_streams(service: Service, image: str) -> None:
    r = cli("run", "--rm", "--network", "none", image, "sh", "-c", "echo out; echo err >&2")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"out\n", b"err\n")
    assert cli("run", "--rm", "--network", "none", image, "sh", "-c", "exit 3").returncode == 3
    r = cli("run", "--rm", "--bogus-flag", image, "true")
    assert r.returncode == 125 and b"bogus-flag" in r.stderr
    r = cli("run", "--rm", "--network", "none", image, "no-such-cmd")
    assert r.returncode == 127
    r = cli("run", "--rm", "-i", "--network", "none", image, "sh", "-c", "tr a-z A-Z",
            input=b"piped in\n")
    assert (r.returncode, r.stdout) == (0, b"PIPED IN\n")
    r = cli("no-such-command")
    assert r.returncode == 1 and b"'no-such-command' is not a berth command" in r.stderr


def test_short_and_long_containers_end_the_same(service: Service, image: str) -> None:
    """Over within the monitor's grace period (finished by the monitor) or after it (the
    finish handed over to the waiting command, the service's child): the same output, code
    and --rm (tests/integration/test_monitor_paths.py has the in-process cases)."""
    for pause in ("0", "0.6"):
        r = cli("run", "--rm", "--network", "none", image, "sh", "-c",
                f"printf a; sleep {pause}; echo b; echo c >&2; exit 9")
        assert (r.returncode, r.stdout, r.stderr) == (9, b"ab\n", b"c\n")
    assert berth("ps", "-aq").stdout == ""


def test_the_commands_run_in_the_service(service: Service, image: str) -> None:
    p = subprocess.Popen([*CLIENT, "run", "--rm", "--network", "none", image, "sleep", "2"])
    end = time.monotonic() + 10
    while not served_by(service):
        assert time.monotonic() < end and p.poll() is None
        time.sleep(0.02)
    assert p.wait(30) == 0
    r = cli("run", "--rm", "--network", "none", image, "true", env={
        **os.environ, "BERTH_NO_SERVICE": "1"})
    assert r.returncode == 0


def test_detached_ps_logs_rm(service: Service, image: str) -> None:
    r = cli("run", "-d", "--name", "bg", "--network", "none", image, "sh", "-c",
            "echo hello; sleep 30")
    assert r.returncode == 0 and len(r.stdout.strip()) == 64
    assert b"bg" in cli("ps").stdout
    end = time.monotonic() + 10
    while cli("logs", "bg").stdout != b"hello\n":
        assert time.monotonic() < end
        time.sleep(0.1)
    assert cli("rm", "-f", "bg").returncode == 0
    assert b"bg" not in cli("ps", "-a").stdout


def test_cwd_and_environment_are_the_clients(service: Service, image: str,
                                             berth_env) -> None:
    ctx = berth_env.tmp / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM bb:test\nCOPY hello.txt /hello.txt\n")
    (ctx / "hello.txt").write_text("from the context\n")
    r = cli("build", "-q", "-t", "rel:1", ".", cwd=str(ctx))  # "." is the client's cwd
    assert r.returncode == 0, r.stderr
    r = cli("run", "--rm", "--network", "none", "rel:1", "cat", "/hello.txt")
    assert r.stdout == b"from the context\n"
    # another BERTH_ROOT in the client's environment is another store
    other = berth_env.tmp / "other-root"
    other.mkdir()
    r = cli("images", "-q", env={**os.environ, "BERTH_ROOT": str(other)})
    assert (r.returncode, r.stdout) == (0, b"")
    assert cli("images", "-q").stdout.strip() != b""


def test_a_signal_to_the_client_reaches_the_container(service: Service, image: str) -> None:
    p = subprocess.Popen([*CLIENT, "run", "--rm", "--network", "none", image, "sh", "-c",
                          'trap "exit 7" TERM; echo ready; sleep 30 & wait'],
                         stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    p.send_signal(signal.SIGTERM)
    assert p.wait(30) == 7


def test_run_it_through_a_pty(service: Service, image: str) -> None:
    import pty
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [*CLIENT, "run", "-it", "--rm", "--network", "none", image,
                                  "sh"])
    try:
        from test_containers import _read_until
        _read_until(fd, b"# ")
        os.write(fd, b"echo sum-$((40+2)); exit 5\r")
        _read_until(fd, b"sum-42")
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 5
    finally:
        os.close(fd)


def test_ten_clients_at_once(service: Service, image: str) -> None:
    def one(i: int) -> subprocess.CompletedProcess:
        return cli("run", "--rm", "--network", "none", image, "sh", "-c", f"echo n{i}")
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(one, range(10)))
    assert [(r.returncode, r.stdout) for r in results] == [
        (0, f"n{i}\n".encode()) for i in range(10)]


def test_a_killed_service_means_in_process(berth_env, image: str) -> None:
    svc = Service(berth_env.run)
    svc.proc.kill()
    svc.proc.wait(10)
    assert svc.sock.exists()  # left behind: nobody accepts on it
    r = cli("run", "--rm", "--network", "none", image, "sh", "-c", "echo fine; exit 4")
    assert (r.returncode, r.stdout) == (4, b"fine\n")
    svc = Service(berth_env.run)  # a new one takes the stale socket over
    try:
        assert cli("ps").returncode == 0
    finally:
        svc.stop()


def test_another_uid_is_refused(service: Service) -> None:
    nobody = pwd.getpwnam("nobody").pw_uid
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)
        link = os.path.join(d, "berth.sock")
        os.link(service.sock, link)  # where nobody can reach it (the run dir is 0700)
        os.chmod(link, 0o666)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # nobody, asking for `ps`
            code = 1
            try:
                os.close(r)
                os.setgroups([])
                os.setgid(nobody)
                os.setuid(nobody)
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(link)
                try:
                    socket.send_fds(s, [client.encode_request(["ps"], {}, "/", 0o22)],
                                    [0, 1, 2])
                except OSError:
                    pass
                answer = s.recv(64)
                os.write(w, answer or b"closed")
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        try:
            assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
            got = os.read(r, 64)
        finally:
            os.close(r)
            os.chmod(service.sock, 0o600)
        assert got == client.answer(b"E")  # refused, and nothing started for it
        assert not served_by(service)
