"""berth-runtime's lifecycle through its command line, on the real kernel.

create -> created -> start -> running -> kill -> stopped -> delete leaves nothing (the
berth_env fixture checks mounts, cgroups and processes); run passes the exit code through;
exec shares the namespaces; unknown ids and wrong states are clear errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from helpers.runtime import rt  # noqa: F401 - the fixture


def test_lifecycle_states_and_cleanup(rt, bundle, berth_env):
    b = bundle(["sleep", "60"])
    pidfile = berth_env.tmp / "pid"
    rt("create", "--bundle", str(b), "--pid-file", str(pidfile), "c1")
    state = json.loads(rt("state", "c1").stdout)
    assert state["status"] == "created"
    assert state["id"] == "c1" and state["bundle"] == str(b)
    assert state["ociVersion"].startswith("1.")
    pid = int(pidfile.read_text())
    assert state["pid"] == pid
    # Before start the user's program has not run: init is still berth, waiting.
    assert b"sleep" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    rt("start", "c1")
    assert rt.status("c1") == "running"
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == b"sleep"
    listed = rt("list", "--format", "json").stdout
    assert [c["id"] for c in json.loads(listed)] == ["c1"]
    assert "c1" in rt("list").stdout.splitlines()[1]
    rt("kill", "c1", "KILL")
    rt.wait_status("c1", "stopped")
    assert json.loads(rt("state", "c1").stdout)["pid"] == 0
    rt("delete", "c1")
    assert not (rt.root / "c1").exists()
    assert rt("state", "c1", check=False).returncode != 0


def test_start_twice_is_an_error(rt, bundle):
    rt("create", "--bundle", str(bundle(["sleep", "60"])), "c2")
    rt("start", "c2")
    again = rt("start", "c2", check=False)
    assert again.returncode != 0 and "not created" in again.stderr
    running = rt("delete", "c2", check=False)
    assert running.returncode != 0 and "running" in running.stderr
    rt("delete", "--force", "c2")
    assert not (rt.root / "c2").exists()


def test_run_passes_exit_code_and_output(rt, bundle):
    b = bundle(["sh", "-c", "echo out; echo err >&2; exit 3"])
    proc = rt("run", "--bundle", str(b), "r1", check=False)
    assert proc.returncode == 3
    assert proc.stdout == "out\n" and proc.stderr == "err\n"
    assert not (rt.root / "r1").exists()


def test_run_killed_by_signal_reports_128_plus_n(rt, bundle, berth_runtime):
    # PID 1 ignores signals from inside its namespace, so the kill comes from the host.
    p = subprocess.Popen([str(berth_runtime), "--root", str(rt.root), "run", "--bundle",
                          str(bundle(["sleep", "30"])), "r2"])
    deadline = time.monotonic() + 10
    while not (rt.root / "r2" / "state.json").exists() or rt.status("r2") != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    rt("kill", "r2", "KILL")
    assert p.wait(timeout=10) == 128 + 9


def test_run_forwards_sigterm(rt, bundle, berth_runtime):
    b = bundle(["sh", "-c", "trap 'echo got TERM; exit 5' TERM; sleep 30 & wait"])
    p = subprocess.Popen([str(berth_runtime), "--root", str(rt.root), "run", "--bundle", str(b),
                          "r3"], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not (rt.root / "r3" / "state.json").exists() or rt.status("r3") != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.2)  # let the shell install its trap
    p.terminate()
    out, _ = p.communicate(timeout=10)
    assert p.returncode == 5 and "got TERM" in out


@pytest.mark.parametrize("verb", [("state",), ("start",), ("kill",), ("delete",),
                                  ("exec", "x", "true"), ("ps",), ("pause",)])
def test_unknown_container_is_a_clear_error(rt, verb):
    args = [verb[0], "nosuch", *verb[2:]] if verb[0] != "exec" else ["exec", "nosuch", "true"]
    proc = rt(*args, check=False)
    assert proc.returncode == 1
    assert "nosuch" in proc.stderr and "does not exist" in proc.stderr


def test_kill_of_stopped_container_is_an_error(rt, bundle):
    rt("create", "--bundle", str(bundle(["true"])), "k1")
    rt("start", "k1")
    rt.wait_status("k1", "stopped")
    proc = rt("kill", "k1", "TERM", check=False)
    assert proc.returncode == 1 and "stopped" in proc.stderr
    rt("delete", "k1")


@pytest.mark.parametrize("sig", ["SIGUSR1", "USR1", "10"])
def test_kill_signal_spellings(rt, bundle, sig):
    b = bundle(["sh", "-c", "trap 'exit 42' USR1; while :; do sleep 0.05; done"])
    rt("create", "--bundle", str(b), "s1")
    rt("start", "s1")
    time.sleep(0.2)
    rt("kill", "s1", sig)
    rt.wait_status("s1", "stopped")
    rt("delete", "s1")


def test_unknown_signal_is_rejected(rt, bundle):
    rt("create", "--bundle", str(bundle(["sleep", "30"])), "s2")
    proc = rt("kill", "s2", "SIGNOPE", check=False)
    assert proc.returncode == 1 and "unknown signal" in proc.stderr
    rt("delete", "--force", "s2")


def test_exec_shares_namespaces_and_cgroup(rt, bundle):
    rt("create", "--bundle", str(bundle(["sleep", "60"])), "e1")
    rt("start", "e1")
    pid = json.loads(rt("state", "e1").stdout)["pid"]
    out = rt("exec", "e1", "sh", "-c",
             "for n in mnt pid net ipc uts; do readlink /proc/self/ns/$n; done; "
             "cat /proc/self/cgroup; ps -o pid,comm").stdout
    lines = out.splitlines()
    for i, ns in enumerate(("mnt", "pid", "net", "ipc", "uts")):
        assert lines[i] == os.readlink(f"/proc/{pid}/ns/{ns}")
    host_cgroups = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    assert lines[5:5 + len(host_cgroups)] == host_cgroups
    assert any(line.split() == ["1", "sleep"] for line in lines)
    pids = json.loads(rt("ps", "--format", "json", "e1").stdout)
    assert pid in pids
    rt("delete", "--force", "e1")


def test_exec_user_cwd_env_and_exit_code(rt, bundle):
    rt("create", "--bundle", str(bundle(["sleep", "60"])), "e2")
    rt("start", "e2")
    proc = rt("exec", "--user", "1000:1000", "--cwd", "/tmp", "-e", "FOO=bar", "e2",
              "sh", "-c", "id -u; id -g; pwd; echo $FOO; exit 9", check=False)
    assert proc.returncode == 9
    assert proc.stdout.split() == ["1000", "1000", "/tmp", "bar"]
    missing = rt("exec", "e2", "no-such-program", check=False)
    assert missing.returncode != 0 and "no-such-program" in missing.stderr
    rt("delete", "--force", "e2")


def test_only_std_fds_reach_the_container(rt, bundle):
    """CVE-2024-21626: no descriptor of the runtime survives into run or exec."""
    out = rt("run", "--bundle", str(bundle(["sh", "-c", "ls /proc/$$/fd; readlink /proc/$$/cwd"])),
             "f1").stdout.split()
    assert out == ["0", "1", "2", "/"]
    rt("create", "--bundle", str(bundle(["sleep", "60"])), "f2")
    rt("start", "f2")
    out = rt("exec", "f2", "sh", "-c", "ls /proc/$$/fd; readlink /proc/$$/cwd; ls /proc/1/fd").stdout.split()
    assert out == ["0", "1", "2", "/", "0", "1", "2"]
    rt("delete", "--force", "f2")


def test_pause_and_resume(rt, bundle):
    rt("create", "--bundle", str(bundle(["sleep", "60"])), "p1")
    rt("start", "p1")
    rt("pause", "p1")
    assert rt.status("p1") == "paused"
    rt("resume", "p1")
    assert rt.status("p1") == "running"
    rt("delete", "--force", "p1")


def test_create_twice_same_id_conflicts(rt, bundle):
    b = bundle(["sleep", "60"])
    rt("create", "--bundle", str(b), "d1")
    proc = rt("create", "--bundle", str(b), "d1", check=False)
    assert proc.returncode == 1 and "already exists" in proc.stderr
    rt("delete", "--force", "d1")


def test_spec_writes_a_default_config(rt, tmp_path):
    rt("spec", "--bundle", str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["process"]["args"] == ["sh"]
    assert {n["type"] for n in config["linux"]["namespaces"]} >= {"pid", "mount", "network"}
    again = rt("spec", "--bundle", str(tmp_path), check=False)
    assert again.returncode == 1 and "exists" in again.stderr


def test_preserve_fds_passes_the_callers_descriptors(rt, bundle, berth_runtime, berth_env):
    """--preserve-fds N hands fds 3..3+N-1 on (runc's option); fd 3+N and above never."""
    data = berth_env.tmp / "passed"
    data.write_text("through fd 3\n")
    extra = berth_env.tmp / "not-passed"
    extra.write_text("x\n")
    b = bundle(["sh", "-c", "cat <&3; for f in /proc/$$/fd/*; do echo ${f##*/}=$(readlink $f); done"])
    with open(data) as f3, open(extra) as f4:
        for want, fd in ((3, f3.fileno()), (4, f4.fileno())):
            if fd != want:
                os.dup2(fd, want, inheritable=True)
        proc = subprocess.run([str(berth_runtime), "--root", str(rt.root), "run",
                               "--preserve-fds", "1", "--bundle", str(b), "pf1"],
                              pass_fds=(3, 4), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "through fd 3"
    fds = dict(line.split("=", 1) for line in lines[1:])
    # Beyond fd 3 only the shell's own pipe of $(readlink) may show (fd 4, with runc too);
    # the caller's fd 4 (a file) must not.
    assert fds["3"].endswith("/passed"), fds
    assert all(v.startswith("pipe:") for k, v in fds.items() if k not in ("0", "1", "2", "3")), fds
