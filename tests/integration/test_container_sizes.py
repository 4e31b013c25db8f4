"""`ps -s`, `inspect --size` and inspect's State on the real kernel: the writable layer's
apparent size (hardlinks once) walked for a running container and recorded at exit
(containers.size_rw, log_size, for `system df`), docker's "2B (virtual 1.24MB)", and State's
Paused, Running, Pid, OOMKilled, StartedAt and FinishedAt as docker reports them."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from helpers.cli import berth

TYPE_CHECKING = False
if TYPE_CHECKING:
    from conftest import BerthEnv

ZERO_TIME = "0001-01-01T00:00:00Z"


def inspect(name: str, *flags: str) -> dict:
    return json.loads(berth("container", "inspect", *flags, name).stdout)[0]


def wait_for(name: str, path: str) -> None:
    deadline = time.monotonic() + 10
    while berth("exec", name, "test", "-e", path, check=False).returncode != 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def image_size(image: str) -> int:
    return int(berth("image", "inspect", "-f", "{{.Size}}", image).stdout)


def test_ps_size_of_a_running_and_an_exited_container(image: str, berth_env: BerthEnv) -> None:
    from berth.cli.format import human_size
    berth("run", "-d", "--name", "sz", image, "sh", "-c",
          "echo x > /two && head -c 1000 /bin/busybox > /k && ln /k /k2 && touch /ready && "
          "exec sleep 300")
    wait_for("sz", "/ready")
    virtual = human_size(image_size(image) + 1002)
    lines = berth("ps", "-s").stdout.splitlines()
    assert lines[0].split()[-1] == "SIZE"
    assert lines[1].endswith(f"1kB (virtual {virtual})")  # 2 + 1000 (the hardlink once)
    assert berth("ps", "--format", "{{.Names}} {{.Size}}").stdout == \
        f"sz 1kB (virtual {virtual})\n"
    doc = inspect("sz", "--size")
    assert (doc["SizeRw"], doc["SizeRootFs"]) == (1002, image_size(image) + 1002)
    assert "SizeRw" not in inspect("sz")  # only when asked, as docker
    berth("exec", "sz", "rm", "/two")
    berth("stop", "-t", "1", "sz")
    with sqlite3.connect(berth_env.root / "berth.db") as db:
        size_rw, log_size = db.execute("SELECT size_rw, log_size FROM containers "
                                       "WHERE name = 'sz'").fetchone()
    assert size_rw == 1000  # recorded at exit: the whiteout of /two counts nothing
    assert log_size == 0
    assert inspect("sz", "--size")["SizeRw"] == 1000
    assert berth("ps", "-a", "--format", "{{.Size}}").stdout == \
        f"1kB (virtual {human_size(image_size(image) + 1000)})\n"


def test_log_size_and_created_container(image: str, berth_env: BerthEnv) -> None:
    berth("run", "--name", "talk", image, "sh", "-c", "echo hello; echo world >&2")
    berth("create", "--name", "new", image, "true")
    with sqlite3.connect(berth_env.root / "berth.db") as db:
        rows = dict(db.execute("SELECT name, log_size FROM containers").fetchall())
    log = Path(inspect("talk")["LogPath"])
    assert rows["talk"] == log.stat().st_size > 0
    assert rows["new"] == 0
    doc = inspect("new", "-s")
    assert doc["SizeRw"] == 0 and doc["SizeRootFs"] == image_size(image)
    state = doc["State"]
    assert (state["Status"], state["Running"], state["Pid"], state["StartedAt"],
            state["FinishedAt"]) == ("created", False, 0, ZERO_TIME, ZERO_TIME)


def test_state_paused_running_and_finished_at(image: str) -> None:
    berth("run", "-d", "--name", "pp", image, "sleep", "300")
    berth("pause", "pp")
    state = inspect("pp")["State"]
    assert (state["Status"], state["Running"], state["Paused"]) == ("paused", True, True)
    assert state["Pid"] > 0
    assert berth("ps", "--format", "{{.State}}").stdout == "paused\n"
    berth("unpause", "pp")
    state = inspect("pp")["State"]
    assert (state["Status"], state["Paused"]) == ("running", False)
    assert state["FinishedAt"] == ZERO_TIME
    berth("kill", "pp")
    berth("wait", "pp")
    state = inspect("pp")["State"]
    assert (state["Status"], state["Running"], state["Pid"], state["ExitCode"],
            state["OOMKilled"]) == ("exited", False, 0, 137, False)
    finished = state["FinishedAt"]
    assert finished != ZERO_TIME
    berth("start", "pp")  # running again: docker keeps the last FinishedAt
    state = inspect("pp")["State"]
    assert state["Running"] and state["FinishedAt"] == finished
    berth("rm", "-f", "pp")


def test_oom_killed(image: str) -> None:
    r = berth("run", "--name", "hog", "-m", "16m", "--memory-swap", "16m", image, "sh", "-c",
              "x=a; while :; do x=$x$x; done", check=False, timeout=120)
    assert r.returncode == 137
    state = inspect("hog")["State"]
    assert state["OOMKilled"] is True and state["ExitCode"] == 137


def test_stats_shows_network_and_block_io(image: str) -> None:
    """NET I/O and BLOCK I/O as docker prints them ("1.2kB / 0B"): a container with its own
    network namespace but only loopback has sent nothing that counts; on the host's network
    docker shows nothing either."""
    import re
    berth("run", "-d", "--name", "io", "--network", "none", image, "sh", "-c",
          "ping -c 2 -i 0.2 127.0.0.1 >/dev/null; sleep 60")
    berth("run", "-d", "--name", "hostnet", "--network", "host", image, "sleep", "60")
    out = berth("stats", "--no-stream", "--format", "{{.Name}}|{{.NetIO}}|{{.BlockIO}}", "io",
                "hostnet").stdout.splitlines()
    rows = {line.split("|")[0]: line.split("|")[1:] for line in out}
    pair = re.compile(r"^\d+(\.\d+)?[kMGT]?B / \d+(\.\d+)?[kMGT]?B$")
    assert rows["io"][0] == "0B / 0B" and rows["hostnet"][0] == "0B / 0B"
    assert all(pair.match(v) for r in rows.values() for v in r)
