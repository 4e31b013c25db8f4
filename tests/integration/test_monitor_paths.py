"""The ways a container's end is handled (engine/monitor.py, engine/_pump.py): a container over
within the monitor's grace period is finished by the loaded monitor; a longer one by the bare
pump after the exec, which offers the finish to a `run` waiting in the foreground. What a user
sees must not depend on the path: output (partial lines carried across the exec), exit codes,
--rm, and a CLI that is killed or stopped while it waits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers.cli import BERTH, berth, pids_running, remove_all_containers
from helpers.rootfs import make_rootfs_tar

TYPE_CHECKING = False
if TYPE_CHECKING:
    from conftest import BerthEnv


@pytest.fixture
def image(berth_env: BerthEnv, rootfs: Path) -> str:
    tar = make_rootfs_tar(berth_env.tmp / "rootfs.tar", rootfs)
    berth("import", str(tar), "bb:monitor")
    yield "bb:monitor"
    remove_all_containers()


def _entries(berth_env: BerthEnv, name: str) -> list[tuple[str, str]]:
    cid = berth("inspect", "-f", "{{.Id}}", name).stdout.strip()
    log = berth_env.root / "containers" / cid / f"{cid}-json.log"
    return [(d["stream"], d["log"]) for d in map(json.loads, log.read_text().splitlines())]


@pytest.mark.parametrize("pause", ["0", "0.6"])  # over within the grace period, or after it
def test_output_and_exit_code_whichever_process_finishes(image: str, berth_env: BerthEnv,
                                                         pause: str) -> None:
    script = (f"printf ab; printf x >&2; sleep {pause}; printf 'cd\\n'; echo y >&2; "
              "printf tail; exit 5")
    r = berth("run", "--name", f"p{pause}", "--network", "none", image, "sh", "-c", script,
              check=False)
    assert (r.returncode, r.stdout, r.stderr) == (5, "abcd\ntail", "xy\n")
    # a line begun before the exec and ended after it is one entry, as docker writes it
    entries = _entries(berth_env, f"p{pause}")
    assert sorted(entries) == [("stderr", "xy\n"), ("stdout", "abcd\n"), ("stdout", "tail")]
    assert berth("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}",
                 f"p{pause}").stdout.split() == ["exited", "5"]
    r = berth("run", "--rm", "--network", "none", image, "sh", "-c", script, check=False)
    assert (r.returncode, r.stdout) == (5, "abcd\ntail")
    assert berth("ps", "-aq", "--filter", "status=exited").stdout.split() == \
        [berth("inspect", "-f", "{{.Id}}", f"p{pause}").stdout.strip()[:12]]


def test_a_container_that_closed_its_output_is_still_reaped(image: str) -> None:
    r = berth("run", "--rm", "--network", "none", image, "sh", "-c",
              "echo said; exec >&- 2>&-; sleep 0.6; exit 6", check=False)
    assert (r.returncode, r.stdout) == (6, "said\n")
    cid = berth("run", "-d", "--network", "none", image, "sh", "-c",
                "exec >&- 2>&-; sleep 0.1; exit 7").stdout.strip()
    assert berth("wait", cid).stdout.strip() == "7"
    assert berth("inspect", "-f", "{{.State.Status}}", cid).stdout.strip() == "exited"


def _gone(name: str, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if name not in berth("ps", "-a", "--format", "{{.Names}}").stdout.split():
            return True
        time.sleep(0.1)
    return False


def test_a_killed_cli_leaves_the_finish_to_the_monitor(image: str) -> None:
    cli = subprocess.Popen([*BERTH, "run", "--rm", "--name", "orphan", "--network", "none",
                            image, "sh", "-c", "sleep 1; exit 4"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.6)  # past the grace period: the bare pump holds the container
        assert "orphan" in berth("ps", "--format", "{{.Names}}").stdout.split()
        cli.kill()
        cli.wait()
        assert _gone("orphan")  # --rm done by the monitor, nothing left (leak check)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


def test_a_stopped_cli_does_not_hold_the_finish(image: str) -> None:
    """The monitor waits a moment for the waiting CLI to claim the finish, then does it: a
    `run` stopped (Ctrl-Z) when its container ends holds nothing up, and gets the exit code
    when it goes on."""
    cli = subprocess.Popen([*BERTH, "run", "--rm", "--name", "paused-cli", "--network", "none",
                            image, "sh", "-c", "sleep 0.8; echo done; exit 3"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        os.kill(cli.pid, signal.SIGSTOP)
        assert _gone("paused-cli")  # the container ended and was removed meanwhile
        os.kill(cli.pid, signal.SIGCONT)
        out, err = cli.communicate(timeout=30)
        assert (cli.returncode, out, err) == (3, b"done\n", b"")
    finally:
        if cli.poll() is None:
            os.kill(cli.pid, signal.SIGCONT)
            cli.kill()
            cli.wait()


def test_the_monitor_is_named_from_its_first_moment(image: str) -> None:
    """ps, top and pgrep show a container's monitor as berth-monitor, also during its grace
    period, when it is still the forked CLI (before the exec into the bare pump)."""
    cid = berth("run", "-d", "--network", "none", image, "sleep", "30").stdout.strip()
    pid = berth("inspect", "-f", "{{.State.Pid}}", cid).stdout.strip()
    with open(f"/proc/{pid}/stat") as f:
        ppid = f.read().rpartition(")")[2].split()[1]
    with open(f"/proc/{ppid}/comm") as f:
        assert f.read().strip() == "berth-monitor"
    berth("rm", "-f", cid)


def test_ctrl_c_while_run_starts_leaves_no_unseen_container(image: str) -> None:
    """A SIGINT that reaches `run` while the container is being made or started waits until
    it runs and then goes to it, as every later one does: the CLI never removes the records
    of a container its monitor goes on starting (which would then run out of sight)."""
    seconds = "6%03d" % (os.getpid() % 1000)
    script = f'trap "exit 7" INT; sleep {seconds} & wait'
    for delay in (0.03, 0.06, 0.09, 0.12, 0.2):
        # --init: a SIGINT that reaches the shell before its trap is set kills it (as PID 1
        # it would ignore it, and wait for ever)
        p = subprocess.Popen([*BERTH, "run", "--rm", "--init", "--network", "none", image, "sh",
                              "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
        # before anything was made (130; killed by it, -2, while the interpreter starts), or
        # from the container, which got it (7, or 130 before the trap was set)
        assert p.returncode in (130, -signal.SIGINT, 7), (delay, p.returncode, err)
        deadline = time.monotonic() + 10
        while berth("ps", "-aq").stdout and time.monotonic() < deadline:
            time.sleep(0.1)
        assert berth("ps", "-aq").stdout == "", delay
        assert pids_running("sleep", seconds) == []



def test_a_slow_reader_of_run_gets_all_of_a_rotated_log(image: str) -> None:
    """`run … | less`: the CLI, blocked on a full pipe, still claims the finish in time (from
    a thread of its own), so the monitor does not give up waiting and remove (--rm) the
    files the log rotated into while they are still unread."""
    p = subprocess.Popen([*BERTH, "run", "--rm", "--network", "none", "--log-opt", "max-size=64k",
                          "--log-opt", "max-file=10", image, "sh", "-c",
                          "sleep 0.4; i=0; while [ $i -lt 3000 ]; do "
                          "echo line-$i-................................................; "
                          "i=$((i+1)); done"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3.5)  # past the monitor's 2 s claim window, with our stdout pipe full
    out, err = p.communicate(timeout=60)
    lines = out.decode().splitlines()
    assert p.returncode == 0, err
    assert [ln.split("-")[1] for ln in lines] == [str(i) for i in range(3000)]


def test_a_full_disk_drops_log_entries_and_says_so(tmp_path: Path) -> None:
    """The pump's log on a device that refuses every write (/dev/full: ENOSPC): entries are
    dropped, as docker drops them, the pump goes on, and monitor.log says how many."""
    from berth.engine import _pump
    (tmp_path / "c-json.log").symlink_to("/dev/full")
    log = _pump.Log(str(tmp_path / "c-json.log"), max_size=0)
    r, w = os.pipe()
    os.write(w, b"one\ntwo\n")
    os.close(w)
    assert _pump.pump(log, {r: "stdout"}) == {}  # read to the end, nothing raised
    log.close()
    assert (tmp_path / "monitor.log").read_text() == \
        "2 log entries dropped: No space left on device\n"
