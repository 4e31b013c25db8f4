"""Containers through the CLI on the real kernel: run in the foreground and detached, output
streams kept apart, exit codes (own, 125, 126, 127), ps/logs/stop/kill/rm/wait, --rm, names,
limits reaching the kernel, the monitor outliving the CLI, and bad input leaving nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.rootfs import make_rootfs_tar

TYPE_CHECKING = False
if TYPE_CHECKING:
    from conftest import BerthEnv


def berth(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "berth.cli.main", *args], capture_output=True,
                       text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, r.stderr
    return r


@pytest.fixture
def image(berth_env: BerthEnv, rootfs: Path) -> str:
    tar = make_rootfs_tar(berth_env.tmp / "rootfs.tar", rootfs)
    berth("import", "-c", 'CMD ["sh"]', "-c", "ENV FROM_IMAGE=yes", str(tar), "bb:test")
    yield "bb:test"
    ids = berth("ps", "-aq", check=False).stdout.split()
    if ids:
        berth("rm", "-f", *ids, check=False)


def test_run_foreground_streams_and_exit_code(image: str) -> None:
    r = berth("run", "--rm", image, "sh", "-c", "echo out; echo err >&2; echo $FROM_IMAGE; "
              "exit 3", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\nyes\n", "err\n")
    assert berth("ps", "-aq").stdout == ""  # --rm


@pytest.mark.parametrize("command, code, message", [
    (["/nonexistent"], 127, "no such file or directory"),
    (["nosuchcommand"], 127, "not found"),
    (["/etc/passwd"], 126, "permission denied"),
])
def test_command_cannot_run(image: str, command: list[str], code: int, message: str) -> None:
    r = berth("run", "--rm", image, *command, check=False)
    assert r.returncode == code and message in r.stderr
    assert berth("ps", "-aq").stdout == ""


def test_detached_lifecycle(image: str, berth_env: BerthEnv) -> None:
    cid = berth("run", "-d", "--name", "web", image, "sh", "-c",
                "echo started; trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done"
                ).stdout.strip()
    assert len(cid) == 64
    ps = berth("ps").stdout.splitlines()
    assert ps[0].split()[:2] == ["CONTAINER", "ID"] and "NAMES" in ps[0]
    assert ps[1].startswith(cid[:12]) and ps[1].endswith("web") and "Up " in ps[1]
    deadline = time.monotonic() + 10
    while "started" not in berth("logs", "web").stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = json.loads(berth("container", "inspect", "web").stdout)[0]["State"]["Pid"]
    assert Path(f"/proc/{pid}").exists()
    assert berth("stop", "web").stdout == "web\n"
    assert berth("logs", "web").stdout == "started\nbye\n"
    doc = json.loads(berth("container", "inspect", "web").stdout)[0]
    assert doc["State"]["Status"] == "exited" and doc["State"]["ExitCode"] == 0
    assert "Exited (0)" in berth("ps", "-a").stdout
    assert berth("ps", "-q").stdout == ""
    assert berth("ps", "-aq", "--filter", "status=exited").stdout.strip() == cid[:12]
    assert berth("wait", "web").stdout == "0\n"
    # a stopped container starts again, with the same writable layer
    berth("start", "web")
    assert berth("ps", "-q").stdout.strip() == cid[:12]
    berth("kill", "web")
    assert berth("wait", "web").stdout == "137\n"
    assert berth("rm", "web").stdout == "web\n"
    assert berth("ps", "-aq").stdout == ""
    assert not (berth_env.root / "containers" / cid).exists()
    assert not (berth_env.root / "snapshots" / cid).exists()


def test_container_outlives_the_cli_and_writes_stay_in_its_layer(image: str,
                                                                 berth_env: BerthEnv) -> None:
    p = subprocess.Popen([sys.executable, "-m", "berth.cli.main", "run", "--name", "bg", image,
                          "sh", "-c", "echo x > /etc/written; sleep 30"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while "bg" not in berth("ps").stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)  # the CLI dies; the container and its monitor do not
    p.wait()
    assert "bg" in berth("ps").stdout
    cid = berth("ps", "-q", "--no-trunc").stdout.strip()
    upper = berth_env.root / "snapshots" / cid / "upper"
    deadline = time.monotonic() + 10
    while not (upper / "etc/written").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (upper / "etc/written").read_text() == "x\n"
    assert berth("rm", "-f", "bg").stdout == "bg\n"


def test_limits_reach_the_kernel(image: str) -> None:
    r = berth("run", "--rm", "--memory", "32m", "--pids-limit", "20", "--ulimit",
              "nofile=123:456", "--cpus", "0.5", image, "sh", "-c",
              "cat /proc/self/cgroup | head -1 >/dev/null; ulimit -n; ulimit -Hn")
    assert r.stdout.split() == ["123", "456"]
    # the hog is killed by the OOM killer: exit 137
    r = berth("run", "--rm", "-m", "16m", "--memory-swap", "16m", image, "sh", "-c",
              "x=a; while :; do x=$x$x; done", check=False, timeout=120)
    assert r.returncode == 137


@pytest.mark.parametrize("args, message", [
    (["run", "nosuch:image", "true"], "No such image: nosuch:image"),
    (["run", "--memory", "12x", "IMAGE", "true"], "invalid size: '12x'"),
    (["run", "--mount", "type=bind,source=/nonexistent-berth,target=/x", "IMAGE", "true"],
     "bind source path does not exist: /nonexistent-berth"),
    (["run", "--ulimit", "nofile=1:99999999", "IMAGE", "true"], "RLIMIT_NOFILE"),
    (["run", "-u", "ghost", "IMAGE", "true"], "unable to find user ghost"),
    (["run", "--bogus", "IMAGE"], "unknown flag: --bogus"),
])
def test_bad_input_exits_125_and_creates_nothing(image: str, berth_env: BerthEnv,
                                                 args: list[str], message: str) -> None:
    r = berth(*[image if a == "IMAGE" else a for a in args], check=False)
    assert r.returncode == 125, r.stderr
    assert message in r.stderr
    assert berth("ps", "-aq").stdout == ""
    assert os.listdir(berth_env.root / "containers") == [] if (
        berth_env.root / "containers").exists() else True


def test_names_and_images_in_use(image: str) -> None:
    berth("create", "--name", "one", image, "true")
    r = berth("create", "--name", "one", image, "true", check=False)
    assert r.returncode == 125 and 'The container name "/one" is already in use' in r.stderr
    r = berth("rmi", image, check=False)
    assert r.returncode == 1 and "is using its referenced image" in r.stderr
    berth("rm", "one")
    assert berth("ps", "-aq").stdout == ""


def test_seed_walkthrough_diff_commit_history(image: str) -> None:
    """The seed's interactive image creation: change a container, diff, commit, history, and a
    new container from the new image sees the changes."""
    berth("run", "--name", "walk", image, "sh", "-c",
          "mkdir -p /usr/local/bin && printf '#!/bin/sh\\necho hello\\n' > /usr/local/bin/hello"
          " && chmod +x /usr/local/bin/hello && echo 'x:x:1:1::/:/bin/sh' >> /etc/passwd"
          " && rm /bin/vi")
    assert "walk" in berth("container", "ls", "-a").stdout
    # the test image has /usr (usr/bin/env): `C /usr` where an image without it says `A /usr`
    assert berth("container", "diff", "walk").stdout.splitlines() == [
        "C /bin", "D /bin/vi", "C /etc", "C /etc/passwd", "C /usr", "A /usr/local",
        "A /usr/local/bin", "A /usr/local/bin/hello"]
    image_id = berth("container", "commit", "-m", "hello added", "-c", 'CMD ["hello"]',
                     "walk", "walked:1").stdout.strip()
    rows = berth("image", "history", "--format", "{{.ID}}|{{.Size}}|{{.Comment}}",
                 "walked:1").stdout.splitlines()
    assert rows[0].startswith(image_id[7:19] + "|") and rows[0].endswith("|hello added")
    assert rows[0].split("|")[1].endswith("B") and len(rows) == 2
    r = berth("run", "--rm", "walked:1")
    assert r.stdout == "hello\n"
    r = berth("run", "--rm", "walked:1", "sh", "-c", "tail -1 /etc/passwd; test -e /bin/vi || "
              "echo gone; cat /etc/hostname | wc -c")
    assert r.stdout.splitlines()[:2] == ["x:x:1:1::/:/bin/sh", "gone"]
    berth("rm", "walk")


def test_concurrent_clis_leave_a_consistent_state(image: str, berth_env: BerthEnv) -> None:
    """10 CLIs at once, each creating, starting and removing 10 containers: afterwards every
    container is fully there or fully gone, and nothing leaks (the fixture's leak check)."""
    script = ("for i in $(seq 10); do "
              "id=$({py} -m berth.cli.main run -d {img} sleep 5) || exit 1; "
              "{py} -m berth.cli.main rm -f $id >/dev/null || exit 2; done")
    procs = [subprocess.Popen(["sh", "-c", script.format(py=sys.executable, img=image)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(10)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 10, results
    assert berth("ps", "-aq").stdout == ""
    assert os.listdir(berth_env.root / "containers") == []
    assert not (berth_env.root / "snapshots").exists() or \
        os.listdir(berth_env.root / "snapshots") == []
    from berth.store.db import Database
    db = Database(berth_env.root)
    try:
        counts = dict(db.read("SELECT action, count(*) FROM events WHERE type = 'container' "
                              "GROUP BY action"))
    finally:
        db.close()
    assert counts["create"] == counts["start"] == counts["die"] == counts["destroy"] == 100


def test_restart_policy_on_failure_3_restarts_exactly_3_times(image: str) -> None:
    berth("run", "-d", "--name", "flaky", "--restart", "on-failure:3", image, "sh", "-c",
          "echo try; exit 4")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        doc = json.loads(berth("container", "inspect", "flaky").stdout)[0]
        if doc["State"]["Status"] == "exited":
            break
        time.sleep(0.1)
    assert doc["State"]["Status"] == "exited" and doc["State"]["ExitCode"] == 4
    assert doc["RestartCount"] == 3
    assert berth("logs", "flaky").stdout == "try\n" * 4  # the first run and 3 restarts
    # `always` comes back after the process exits, but not after `stop`
    berth("run", "-d", "--name", "always", "--restart", "always", image, "sh", "-c",
          "echo up; sleep 0.2; exit 0")
    deadline = time.monotonic() + 30
    while berth("logs", "always").stdout.count("up") < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert berth("logs", "always").stdout.count("up") >= 3  # it came back after clean exits
    berth("stop", "-t", "1", "always")
    assert berth("wait", "always").returncode == 0
    time.sleep(0.5)  # longer than the next back-off: a restart would show now
    assert "Exited" in berth("ps", "-a", "--filter", "name=always").stdout
    r = berth("run", "--rm", "--restart", "always", image, "true", check=False)
    assert r.returncode == 125 and "Conflicting options: --restart and --rm" in r.stderr


def test_restart_command(image: str) -> None:
    """`berth restart`: a running container gets a new process, a stopped one starts; the
    name is echoed, a `restart` event recorded, an unknown name is an error."""
    berth("run", "-d", "--name", "rs1", "--network", "none", image, "sleep", "60")
    berth("create", "--name", "rs2", "--network", "none", image, "sleep", "60")
    pid = berth("inspect", "-f", "{{.State.Pid}}", "rs1").stdout.strip()
    since = f"{time.time():.3f}"
    r = berth("restart", "-t", "1", "rs1", "rs2", "nope", check=False)
    assert r.returncode == 1 and r.stdout == "rs1\nrs2\n"
    assert "No such container: nope" in r.stderr
    for name in ("rs1", "rs2"):
        assert berth("inspect", "-f", "{{.State.Status}}", name).stdout == "running\n"
    assert berth("inspect", "-f", "{{.State.Pid}}", "rs1").stdout.strip() != pid
    assert berth("events", "--since", since, "--until", f"{time.time():.3f}", "--filter",
                 "event=restart", "--format", "{{.Actor.Attributes.name}}").stdout == \
        "rs1\nrs2\n"
    berth("rm", "-f", "rs1", "rs2")


def test_run_i_feeds_stdin_and_exec_joins_the_container(image: str) -> None:
    r = subprocess.run([sys.executable, "-m", "berth.cli.main", "run", "--rm", "-i", image,
                        "sh", "-c", "cat; echo end"], input="one\ntwo\n", capture_output=True,
                       text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "one\ntwo\nend\n")
    r = subprocess.run([sys.executable, "-m", "berth.cli.main", "run", "--rm", image, "cat"],
                       input="ignored\n", capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "")  # without -i: /dev/null
    berth("run", "-d", "--name", "host", "--hostname", "box", image, "sleep", "60")
    r = berth("exec", "-u", "nobody", "-w", "/tmp", "-e", "X=1", "host", "sh", "-c",
              "echo $(hostname) $(id -u) $(pwd) $X; exit 7", check=False)
    assert (r.returncode, r.stdout) == (7, "box 65534 /tmp 1\n")
    r = berth("exec", "host", "/nonexistent", check=False)
    assert r.returncode == 127 and "no such file" in r.stderr
    r = subprocess.run([sys.executable, "-m", "berth.cli.main", "exec", "-i", "host", "cat"],
                       input="fed\n", capture_output=True, text=True, timeout=60)
    assert r.stdout == "fed\n"
    berth("stop", "-t", "0", "host")
    r = berth("exec", "host", "true", check=False)
    assert r.returncode == 1 and "is not running" in r.stderr


def test_pause_top_rename_export(image: str, berth_env: BerthEnv) -> None:
    berth("run", "-d", "--name", "p1", image, "sh", "-c", "echo hi > /made; exec sleep 60")
    deadline = time.monotonic() + 10
    while "sleep 60" not in berth("top", "p1").stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    top = berth("top", "p1").stdout.splitlines()
    assert top[0].split()[:3] == ["UID", "PID", "PPID"] and "sleep 60" in top[1]
    berth("pause", "p1")
    assert "(Paused)" in berth("ps").stdout
    state = [ln for ln in Path(f"/proc/{top[1].split()[1]}/status").read_text().splitlines()
             if ln.startswith("State:")][0]
    assert state.split()[1] in ("D", "T")  # frozen by the cgroup freezer (v1: D, v2: T)
    r = berth("pause", "p1", check=False)
    assert r.returncode == 1 and "already paused" in r.stderr
    berth("unpause", "p1")
    assert "(Paused)" not in berth("ps").stdout
    berth("rename", "p1", "p2")
    assert berth("ps", "--format", "{{.Names}}").stdout == "p2\n"
    out = berth_env.tmp / "export.tar"
    berth("export", "-o", str(out), "p2")
    import tarfile
    with tarfile.open(out) as tar:
        names = tar.getnames()
        assert "bin/busybox" in names and "made" in names
        assert tar.extractfile("made").read() == b"hi\n"
    berth("rm", "-f", "p2")


def _cgroup_file(pid: int, controller: str, name: str) -> Path:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if controller in ctrls.split(","):
            return Path(f"/sys/fs/cgroup/{controller}{path}/{name}")
    _, _, path = [ln for ln in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                  if ln.startswith("0::")][0].split(":", 2)
    unified = Path("/sys/fs/cgroup/unified") if Path("/sys/fs/cgroup/unified").is_dir() \
        else Path("/sys/fs/cgroup")
    return unified / path.lstrip("/") / {"limit_in_bytes": "memory.max",
                                         "max": "pids.max"}.get(name, name)


def test_update_labels_and_stop_signal(image: str) -> None:
    berth("run", "-d", "--name", "u1", "-m", "64m", "-l", "team=a", "--stop-signal", "USR1",
          "--stop-timeout", "5", image, "sh", "-c",
          "trap 'echo usr1; exit 3' USR1; while :; do sleep 0.1; done")
    pid = json.loads(berth("container", "inspect", "u1").stdout)[0]["State"]["Pid"]
    limit = _cgroup_file(pid, "memory", "memory.limit_in_bytes")
    assert int(limit.read_text()) == 64 << 20
    assert berth("update", "-m", "32m", "--pids-limit", "9", "u1").stdout == "u1\n"
    assert int(limit.read_text()) == 32 << 20
    assert _cgroup_file(pid, "pids", "pids.max").read_text().strip() == "9"
    r = berth("update", "-m", "12x", "u1", check=False)
    assert r.returncode == 125 and "invalid size" in r.stderr
    assert berth("ps", "--filter", "label=team=a", "--format", "{{.Names}} {{.Labels}}"
                 ).stdout == "u1 team=a\n"
    assert berth("ps", "--filter", "label=team=b", "-q").stdout == ""
    t0 = time.monotonic()
    berth("stop", "u1")  # the container's own stop signal, answered at once
    assert time.monotonic() - t0 < 4
    assert berth("wait", "u1").stdout == "3\n" and berth("logs", "u1").stdout == "usr1\n"
    berth("rm", "u1")
    r = berth("run", "--stop-signal", "BOGUS", image, "true", check=False)
    assert r.returncode == 125 and "invalid signal: BOGUS" in r.stderr


def _pty_spawn(*args: str) -> tuple[int, int]:
    import pty
    pid, fd = pty.fork()
    if pid == 0:  # the CLI, with a real terminal as its controlling tty
        os.execv(sys.executable, [sys.executable, "-m", "berth.cli.main", *args])
    return pid, fd


def _read_until(fd: int, text: bytes, timeout: float = 15) -> bytes:
    import select
    buf = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            buf += data
            if text in buf:
                return buf
    raise AssertionError(f"no {text!r} within {timeout} s; got {buf!r}")


def _sized_then_resized(pid: int, fd: int, size: tuple[int, int], resized: tuple[int, int],
                        tty: bytes) -> None:
    """The pty steps `run -it` and `exec -it` share: a window size before the shell's prompt,
    the shell on a pty named `tty` seeing that size, then a new size and SIGWINCH to the CLI
    (the caller checks that it arrives)."""
    import fcntl
    import struct
    import termios
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    _read_until(fd, b"# ")
    os.write(fd, b"tty; stty size; echo sum-$((40+2))\r")
    out = _read_until(fd, b"sum-42")
    assert tty in out and b"%d %d" % size in out
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", *resized, 0, 0))
    os.kill(pid, signal.SIGWINCH)
    time.sleep(0.3)


def test_run_it_is_a_real_terminal_with_resize_ctrl_c_detach_and_attach(image: str) -> None:
    pid, fd = _pty_spawn("run", "-it", "--name", "term", image, "sh")
    _sized_then_resized(pid, fd, (30, 100), (40, 120), b"/dev/pts/0")
    os.write(fd, b"stty size\r")
    _read_until(fd, b"40 120")
    os.write(fd, b"sleep 100\r")
    time.sleep(0.5)
    os.write(fd, b"\x03")  # Ctrl-C reaches the container's foreground process
    os.write(fd, b"echo after-$((1+1))\r")
    _read_until(fd, b"after-2")
    os.write(fd, b"\x10\x11")  # Ctrl-P Ctrl-Q: detach, the container goes on
    _read_until(fd, b"read escape sequence")
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    os.close(fd)
    assert "term" in berth("ps").stdout
    pid, fd = _pty_spawn("attach", "term")
    time.sleep(0.5)
    os.write(fd, b"echo back-$((2+2)); exit 7\r")
    _read_until(fd, b"back-4")
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7
    os.close(fd)
    assert berth("wait", "term").stdout == "7\n"
    assert "sum-42" in berth("logs", "term").stdout  # the terminal's output is logged too
    berth("rm", "term")


def test_start_attach_and_interactive(image: str) -> None:
    """`start -a`: this run's output (not the earlier runs'), stdout and stderr apart, the
    container's exit code; `-i` feeds stdin to a container made with -i."""
    berth("create", "--name", "sa", "--network", "none", image, "sh", "-c",
          "echo out; echo err >&2; exit 3")
    for _ in range(2):
        r = berth("start", "-a", "sa", check=False)
        assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    berth("create", "-i", "--name", "si", "--network", "none", image, "sh", "-c",
          "read x; echo got-$x")
    r = subprocess.run([sys.executable, "-m", "berth.cli.main", "start", "-ai", "si"],
                       input="hello\n", capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "got-hello\n"), r.stderr
    r = berth("start", "-a", "sa", "si", check=False)
    assert r.returncode == 1 and "cannot start and attach multiple containers" in r.stderr
    berth("rm", "sa", "si")


def test_exec_it_is_a_real_terminal(image: str) -> None:
    """`exec -it`: a new pty in the running container, the caller's terminal raw, the window
    size at start and on SIGWINCH, the process's exit code; the container goes on."""
    berth("run", "-d", "--name", "host-of-exec", "--network", "none", image, "sleep", "300")
    pid, fd = _pty_spawn("exec", "-it", "host-of-exec", "sh")
    _sized_then_resized(pid, fd, (33, 101), (44, 121), b"/dev/pts/")
    os.write(fd, b"stty size; exit 5\r")
    _read_until(fd, b"44 121")
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 5
    os.close(fd)
    assert berth("inspect", "-f", "{{.State.Status}}", "host-of-exec").stdout == "running\n"
    berth("rm", "-f", "host-of-exec")


def _zombie_children(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sum(1 for c in children
               if Path(f"/proc/{c}/stat").read_text().rpartition(")")[2].split()[0] == "Z")


def test_init_reaps_zombies_that_a_plain_pid1_leaves(image: str) -> None:
    script = "for i in 1 2 3; do (sleep 0.1 &); done; exec sleep 30"
    berth("run", "-d", "--name", "plain", image, "sh", "-c", script)
    berth("run", "-d", "--init", "--name", "inited", image, "sh", "-c", script)
    time.sleep(1.0)
    plain = json.loads(berth("container", "inspect", "plain").stdout)[0]["State"]["Pid"]
    inited = json.loads(berth("container", "inspect", "inited").stdout)[0]["State"]["Pid"]
    assert _zombie_children(plain) == 3  # sleep, as PID 1, never waits for them
    assert _zombie_children(inited) == 0
    assert Path(f"/proc/{inited}/comm").read_text().strip() == "berth-init"
    berth("stop", "inited")  # SIGTERM forwarded to the program
    assert berth("wait", "inited").stdout == "143\n"
    r = berth("run", "--rm", "--init", image, "sh", "-c", "exit 6", check=False)
    assert r.returncode == 6
    berth("rm", "-f", "plain", "inited")


def test_health_goes_starting_healthy_unhealthy(image: str, berth_env: BerthEnv) -> None:
    berth("run", "-d", "--name", "h1", "--health-cmd", "test -e /tmp/ok",
          "--health-interval", "0.2s", "--health-retries", "2", "--health-start-period", "30s",
          image, "sh", "-c", "sleep 1.5; touch /tmp/ok; sleep 60")

    def status() -> str:
        return json.loads(berth("container", "inspect", "h1").stdout)[0]["State"]["Health"][
            "Status"]

    assert status() == "starting"  # failures inside the start period do not count
    assert "(health: starting)" in berth("ps").stdout
    deadline = time.monotonic() + 15
    while status() != "healthy" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status() == "healthy" and "(healthy)" in berth("ps").stdout, (
        berth("container", "inspect", "--format", "{{json .State.Health}}", "h1").stdout,
        [p.read_text() for p in berth_env.root.glob("containers/*/monitor.log")])
    berth("exec", "h1", "rm", "/tmp/ok")
    deadline = time.monotonic() + 15
    while status() != "unhealthy" and time.monotonic() < deadline:
        time.sleep(0.1)
    doc = json.loads(berth("container", "inspect", "h1").stdout)[0]["State"]["Health"]
    assert doc["Status"] == "unhealthy" and doc["FailingStreak"] >= 2
    assert doc["Log"][-1]["ExitCode"] == 1 and len(doc["Log"]) <= 5
    berth("rm", "-f", "h1")
    from berth.store.db import Database
    db = Database(berth_env.root)
    try:
        actions = [e.action for e in db.events() if e.type == "container"]
    finally:
        db.close()
    assert "health_status: healthy" in actions and "health_status: unhealthy" in actions
    # the image's HEALTHCHECK applies; --no-healthcheck turns it off
    tar = berth_env.tmp / "rootfs.tar"
    berth("import", "-c", "HEALTHCHECK --interval=1s CMD true", str(tar), "bb:health")
    berth("run", "-d", "--name", "h2", "bb:health", "sleep", "60")
    berth("run", "-d", "--name", "h3", "--no-healthcheck", "bb:health", "sleep", "60")
    doc = json.loads(berth("container", "inspect", "h2", "h3").stdout)
    assert "Health" in doc[0]["State"] and "Health" not in doc[1]["State"]
    berth("rm", "-f", "h2", "h3")


def test_stats_and_a_fork_bomb_held_by_pids_limit(image: str) -> None:
    berth("run", "-d", "--name", "busy", "-m", "64m", image, "sh", "-c", "while :; do :; done")
    berth("run", "-d", "--name", "bomb", "--pids-limit", "20", image, "sh", "-c",
          "b() { b | b & }; b; sleep 60")
    deadline = time.monotonic() + 10
    while True:  # a machine busy with the fork bomb may starve one sample: take another
        rows = {ln.split()[1]: ln.split() for ln in
                berth("stats", "--no-stream").stdout.splitlines()[1:]}
        ok = {"busy", "bomb"} <= set(rows) and float(rows["busy"][2].rstrip("%")) > 20
        if ok or time.monotonic() > deadline:
            break
    assert {"busy", "bomb"} <= set(rows), rows
    assert float(rows["busy"][2].rstrip("%")) > 20  # a spinning shell
    assert rows["busy"][5] == "64MiB"
    assert int(rows["bomb"][-1]) <= 20  # pids.max holds the fork bomb
    assert berth("stats", "--no-stream", "--format", "{{.Name}}", "busy").stdout == "busy\n"
    berth("rm", "-f", "busy", "bomb")


def test_log_rotation_and_since(image: str, berth_env: BerthEnv) -> None:
    berth("run", "--name", "chatty", "--log-opt", "max-size=2k", "--log-opt", "max-file=3",
          image, "sh", "-c", "i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done")
    cid = berth("ps", "-aq", "--no-trunc").stdout.strip()
    logs = sorted(p.name for p in (berth_env.root / "containers" / cid).glob("*-json.log*"))
    assert logs == [f"{cid}-json.log", f"{cid}-json.log.1", f"{cid}-json.log.2"]
    assert all((berth_env.root / "containers" / cid / n).stat().st_size <= 2048 for n in logs)
    out = berth("logs", "chatty").stdout.splitlines()
    assert out[-1] == "line-199" and len(out) < 200  # the oldest lines rotated away
    assert out == [f"line-{i}" for i in range(200 - len(out), 200)]  # in order, none lost
    assert berth("logs", "--since", "1h", "chatty").stdout.splitlines() == out
    assert berth("logs", "--since", str(time.time() + 60), "chatty").stdout == ""
    r = berth("run", "--log-opt", "max-file=2", image, "true", check=False)
    assert r.returncode == 125 and "max-file cannot be set without max-size" in r.stderr
    berth("rm", "chatty")


def test_logs_follow_across_rotation_with_timestamps_until_and_details(
        image: str, berth_env: BerthEnv) -> None:
    """`logs -f -t` keeps following when the log rotates under it, and prints every line
    once, with its time; `--until` and `--details` as docker's."""
    berth("run", "-d", "--name", "rolling", "--network", "none", "--log-opt", "max-size=1k",
          "--log-opt", "max-file=5", image, "sh", "-c",
          "echo first; sleep 1.5; i=0; while [ $i -lt 40 ]; do echo line-$i; "
          "i=$((i+1)); done; sleep 0.5")
    r = berth("logs", "-f", "-t", "rolling", timeout=30)
    stamped = r.stdout.splitlines()
    assert [ln.split(" ", 1)[1] for ln in stamped] == \
        ["first"] + [f"line-{i}" for i in range(40)]  # 1 KiB files: it rotated while we read
    assert all(ln.split(" ", 1)[0].endswith("Z") and "T" in ln.split(" ", 1)[0]
               for ln in stamped)
    first_time = stamped[0].split(" ", 1)[0]
    assert berth("logs", "--until", first_time, "rolling").stdout == ""  # before, not at
    assert berth("logs", "--until", "0s", "rolling").stdout.splitlines()[-1] == "line-39"
    assert berth("logs", "--until", "1h", "rolling").stdout == ""
    assert berth("logs", "--details", "-n", "1", "rolling").stdout == " line-39\n"
    r = berth("logs", "--until", "yesterday", "rolling", check=False)
    assert r.returncode == 1 and 'invalid value for "until"' in r.stderr
    berth("rm", "rolling")
    # a `run` in the foreground prints every line too, however often the log rotated
    # (over within the monitor's grace period, or after it)
    script = "i=0; while [ $i -lt 60 ]; do echo run-$i; i=$((i+1)); done"
    for pause in ("", "sleep 0.4; "):
        r = berth("run", "--rm", "--network", "none", "--log-opt", "max-size=1k", "--log-opt",
                  "max-file=10", image, "sh", "-c", pause + script)
        assert r.stdout.splitlines() == [f"run-{i}" for i in range(60)], pause
    # with max-file=1 the log is truncated in place (as docker's): what was cut before it was
    # read is gone, but the reader goes on from the new start, in order, to the last line
    r = berth("run", "--rm", "--network", "none", "--log-opt", "max-size=1k", image, "sh",
              "-c", script)
    numbers = [int(ln.removeprefix("run-")) for ln in r.stdout.splitlines()]
    assert numbers == sorted(set(numbers)) and numbers[-1] == 59, r.stdout


def test_rm_f_of_a_paused_or_orphaned_container_leaves_nothing(image: str) -> None:
    berth("run", "-d", "--name", "frozen", image, "sleep", "60")
    berth("pause", "frozen")
    assert berth("rm", "-f", "frozen").stdout == "frozen\n"  # thawed, killed, removed
    berth("run", "-d", "--name", "orphan", image, "sleep", "60")
    doc = json.loads(berth("container", "inspect", "orphan").stdout)[0]
    monitor = int(Path(f"/proc/{doc['State']['Pid']}/stat").read_text().rpartition(")")[2]
                  .split()[1])
    os.kill(monitor, signal.SIGKILL)  # the monitor dies; the container is orphaned
    deadline = time.monotonic() + 10
    while "Dead" not in berth("ps", "-a").stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Dead" in berth("ps", "-a").stdout
    assert Path(f"/proc/{doc['State']['Pid']}").exists()
    berth("rm", "-f", "orphan")  # kills what the dead monitor left running
    deadline = time.monotonic() + 5
    while Path(f"/proc/{doc['State']['Pid']}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{doc['State']['Pid']}").exists()


def test_a_missing_name_among_several_is_dockers_exit_1(image: str) -> None:
    """docker exits 1 when `rm`, `stop`, `inspect`… failed for some of the names (125 is for
    a `run` berth could not carry out); `rm -f` of a name that does not exist is no failure
    (docker 20.10+), only reported."""
    cid = berth("create", "--network", "none", image, "true").stdout.strip()
    r = berth("rm", cid, "nosuch", check=False)
    assert (r.returncode, r.stdout) == (1, f"{cid}\n") and "No such container: nosuch" in r.stderr
    for args in (("stop", "nosuch"), ("kill", "nosuch"), ("inspect", "nosuch")):
        assert berth(*args, check=False).returncode == 1, args
    r = berth("rm", "-f", "nosuch", check=False)
    assert r.returncode == 0 and "No such container: nosuch" in r.stderr


def test_restart_of_a_restarting_container_leaves_it_running(image: str) -> None:
    """`restart` while a crash-looping container waits out its back-off (docker: it ends up
    running); it used to end "exited", the stop's mark left for the waiting monitor."""
    berth("run", "-d", "--name", "loop", "--restart", "always", "--network", "none", image,
          "sh", "-c", "n=$(cat /count 2>/dev/null || echo 0); echo $((n+1)) > /count; "
          "[ $n -ge 4 ] && exec sleep 60; exit 1")
    deadline = time.monotonic() + 20
    while berth("inspect", "-f", "{{.State.Status}}", "loop").stdout.strip() != "restarting":
        assert time.monotonic() < deadline, "never seen restarting"
        time.sleep(0.02)
    berth("restart", "-t", "0", "loop")
    deadline = time.monotonic() + 20
    while True:  # its fifth run is the one that stays up (the others crash once running)
        status = berth("inspect", "-f", "{{.State.Status}}", "loop").stdout.strip()
        assert status != "exited" and time.monotonic() < deadline, status
        if status == "running" and berth("exec", "loop", "cat", "/count",
                                         check=False).stdout.strip() == "5":
            break
        time.sleep(0.1)
    berth("rm", "-f", "loop")
