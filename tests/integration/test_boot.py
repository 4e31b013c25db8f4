"""After the machine boots, the first berth command does what docker's daemon does when it
starts: containers that were running are recorded as exited (255), and those whose restart
policy is `always` or `unless-stopped` run again. A reboot is simulated: the monitors are
killed, the runtime deletes what is left (processes, cgroups), the overlays are unmounted and
BERTH_RUN (a tmpfs) is emptied."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from helpers.cli import berth

TYPE_CHECKING = False
if TYPE_CHECKING:
    from conftest import BerthEnv


def _power_cut(berth_env: BerthEnv) -> None:
    db = sqlite3.connect(berth_env.root / "berth.db")
    rows = db.execute("SELECT id, monitor_pid FROM containers WHERE status = 'running'").fetchall()
    db.close()
    for _cid, monitor in rows:  # the monitors first, or they would record an exit
        os.kill(monitor, signal.SIGKILL)
    runtime = Path(sys.executable).parent / "berth-runtime"
    for cid, _monitor in rows:
        subprocess.run([str(runtime), "--root", str(berth_env.run / "runtime"), "delete", "-f",
                        cid], check=True, capture_output=True)
        merged = berth_env.root / "snapshots" / cid / "merged"
        subprocess.run(["umount", str(merged)], check=True)
    for p in berth_env.run.iterdir():  # the tmpfs is empty after a reboot
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def test_first_command_after_boot_restarts_what_docker_restarts(
        image: str, berth_env: BerthEnv) -> None:
    for name, policy in (("always", "always"), ("unless", "unless-stopped"), ("plain", "no"),
                         ("stopped", "unless-stopped")):
        berth("run", "-d", "--name", name, "--restart", policy, "--network", "none", image,
              "sleep", "600")
    berth("stop", "-t", "1", "stopped")
    pids = {n: berth("inspect", "--format", "{{.State.Pid}}", n).stdout.strip()
            for n in ("always", "unless")}
    _power_cut(berth_env)
    out = berth("ps", "-a", "--format", "{{.Names}} {{.State}}").stdout.split("\n")
    states = dict(line.split(" ", 1) for line in out if line)
    assert states == {"always": "running", "unless": "running", "plain": "exited",
                      "stopped": "exited"}
    assert berth("inspect", "--format", "{{.State.ExitCode}}", "plain").stdout.strip() == "255"
    for n in ("always", "unless"):  # new processes, really running
        pid = berth("inspect", "--format", "{{.State.Pid}}", n).stdout.strip()
        assert pid != pids[n] and Path(f"/proc/{pid}").exists()
    assert berth("exec", "always", "true").returncode == 0
    # a second command in the same boot changes nothing
    assert berth("ps", "-q").stdout.split() == berth("ps", "-q").stdout.split()
