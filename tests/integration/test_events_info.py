"""`berth events`, `berth info` and `berth version` through the CLI on the real kernel: the
events of a container's life between --since and --until, filters and templates, a live stream
that sees a container started after it began, info's counts (running, paused, stopped) and
version's templates."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time

from helpers.cli import berth

TYPE_CHECKING = False
if TYPE_CHECKING:
    from conftest import BerthEnv

BERTH = [sys.executable, "-m", "berth.cli.main"]


LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9})(Z|[+-]\d\d:\d\d) "
                  r"(\w+) (\S+) (\S+)(?: \((.*)\))?$")


def test_events_of_a_container_life(image: str) -> None:
    since = f"{time.time():.9f}"
    cid = berth("create", "--name", "ev1", "--label", "app=web", "--network", "none", image,
                "true").stdout.strip()
    berth("start", "ev1")
    assert berth("wait", "ev1").stdout == "0\n"
    # labels come from the container's record while it exists (berth records them nowhere else)
    assert berth("events", "--since", since, "--until", f"{time.time():.9f}", "--filter",
                 "label=app=web", "--format", "{{.Action}} {{.Actor.Attributes.app}}"
                 ).stdout == "create web\nstart web\ndie web\n"
    berth("rm", "ev1")
    until = f"{time.time():.9f}"

    lines = berth("events", "--since", since, "--until", until).stdout.splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert [(m[3], m[4], m[5]) for m in parsed if m] == [
        ("container", a, cid) for a in ("create", "start", "die", "destroy")]
    first = parsed[0]
    assert first is not None and first[6] == "image=bb:test, name=ev1"  # sorted
    die = parsed[2]
    assert die is not None and "exitCode=0" in die[6] and "image=bb:test" in die[6]

    def actions(*extra: str) -> list[str]:
        return berth("events", "--since", since, "--until", until, "--format",
                     "{{.Action}}", *extra).stdout.split()

    assert actions("--filter", "event=start", "--filter", "event=die") == ["start", "die"]
    assert actions("-f", "container=ev", "-f", "event=destroy") == ["destroy"]  # name prefix
    assert actions("--filter", f"container={cid[:8]}") == ["create", "start", "die",
                                                           "destroy"]
    assert actions("--filter", "container=other") == []
    assert actions("--filter", "image=bb") == ["create", "start", "die", "destroy"]
    assert actions("--filter", "type=image") == []

    docs = [json.loads(x) for x in berth("events", "--since", since, "--until", until,
                                         "--format", "{{json .}}").stdout.splitlines()]
    assert list(docs[0]) == ["status", "id", "from", "Type", "Action", "Actor", "scope", "time",
                             "timeNano"]
    assert {(d["status"], d["from"], d["scope"]) for d in docs} == {
        (a, "bb:test", "local") for a in ("create", "start", "die", "destroy")}
    assert all(d["time"] == d["timeNano"] // 1_000_000_000 for d in docs)
    assert berth("system", "events", "--since", since, "--until", until, "--format",
                 "json").stdout == berth("events", "--since", since, "--until", until,
                                         "--format", "{{json .}}").stdout

    # since 0: the image's own events too; a duration reaches back from now
    assert "import" in berth("events", "--since", "0", "--until", until, "--filter",
                             "type=image", "--format", "{{.Action}}").stdout.split()
    assert berth("events", "--since", "10m", "--until", f"{time.time() + 1:.3f}", "--filter",
                 "event=create",
                 "--format", "{{.Actor.Attributes.name}}").stdout == "ev1\n"


def test_events_bad_input() -> None:
    r = berth("events", "--format", "{{.Nope}}", check=False)
    assert r.returncode == 64 and r.stderr.startswith("Error parsing format: template: ")
    r = berth("events", "--since", "yesterday", check=False)
    assert r.returncode == 1 and 'failed to parse value as time or duration: "yesterday"' \
        in r.stderr
    r = berth("events", "--since", "2000", "--until", "1000", check=False)
    assert r.returncode == 1 and "cannot be after `until` time" in r.stderr
    r = berth("events", "extra", check=False)
    assert r.returncode == 125 and "accepts no arguments" in r.stderr or "requires" in r.stderr


def _read_until(proc: subprocess.Popen[str], want: str, timeout: float) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    buf = ""
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        chunk = os.read(fd, 4096).decode()
        if not chunk:
            break
        buf += chunk
        *done, buf = buf.split("\n")
        lines += done
        if want in lines:
            break
    return lines


def test_events_live_stream_sees_a_new_container(image: str, berth_env: BerthEnv) -> None:
    proc = subprocess.Popen([*BERTH, "events", "--filter", "type=container", "--format",
                             "{{.Action}} {{.Actor.Attributes.name}}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=berth_env.environ())
    try:
        time.sleep(1.0)  # let it start following: only events after that are shown
        assert proc.poll() is None
        berth("run", "-d", "--name", "live", image, "true")
        lines = _read_until(proc, "die live", timeout=20)
        assert lines[:3] == ["create live", "start live", "die live"], lines
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0 and err == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    berth("rm", "-f", "live")


def test_events_until_in_the_future_stops_by_itself(image: str) -> None:
    start = time.monotonic()
    r = berth("events", "--until", f"{time.time() + 1.5:.3f}", "--format", "{{.Action}}")
    # only --until: every recorded event before it (the image's import), as docker
    assert r.stdout == "import\ntag\n" and 1.0 < time.monotonic() - start < 10


def counts() -> str:
    return berth("info", "--format", "{{.Containers}} {{.ContainersRunning}} "
                 "{{.ContainersPaused}} {{.ContainersStopped}} {{.Images}}").stdout.strip()


def test_info_counts_and_formats(image: str, berth_env: BerthEnv) -> None:
    assert counts() == "0 0 0 0 1"
    berth("create", "--name", "idle", image, "true")
    berth("run", "-d", "--name", "busy", image, "sleep", "60")
    assert counts() == "2 1 0 1 1"
    berth("pause", "busy")
    assert counts() == "2 0 1 1 1"
    text = berth("system", "info").stdout
    for want in ("Server:\n Containers: 2\n  Running: 0\n  Paused: 1\n  Stopped: 1\n Images: 1\n",
                 " Storage Driver: overlay2\n  Backing Filesystem: ", " Cgroup Driver: cgroupfs\n",
                 f" Docker Root Dir: {berth_env.root}\n", " OSType: linux\n",
                 f" Kernel Version: {os.uname().release}\n", " Default Runtime: berth\n"):
        assert want in text, (want, text)
    berth("unpause", "busy")
    assert counts() == "2 1 0 1 1"
    doc = json.loads(berth("info", "--format", "json").stdout)
    assert (doc["Containers"], doc["Driver"], doc["CgroupDriver"], doc["OSType"]) == \
        (2, "overlay2", "cgroupfs", "linux")
    assert doc["DockerRootDir"] == str(berth_env.root) and doc["NCPU"] >= 1
    assert doc["MemTotal"] > 0 and doc["CgroupVersion"] in ("1", "2")
    assert doc["ClientInfo"]["Context"] == "default"
    r = berth("info", "--format", "{{.Containers", check=False)
    assert r.returncode == 64 and r.stderr.startswith("template parsing error: ")
    berth("rm", "-f", "idle", "busy")
    assert counts() == "0 0 0 0 1"


def test_version_formats() -> None:
    from berth import __version__
    assert berth("version", "--format", "{{.Client.Version}}").stdout == __version__ + "\n"
    assert berth("version", "-f", "{{.Server.Version}} {{.Server.Os}}").stdout == \
        f"{__version__} linux\n"
    doc = json.loads(berth("version", "--format", "json").stdout)
    assert doc["Client"]["Version"] == doc["Server"]["Version"] == __version__
    assert doc["Server"]["Components"][0]["Name"] == "Engine"
    text = berth("version").stdout
    assert text.startswith(f"Client:\n Version:           {__version__}\n")
    assert "\nServer: berth\n Engine:\n" in text
    r = berth("version", "--format", "{{.Client", check=False)
    assert r.returncode == 64 and "template parsing error" in r.stderr


def test_events_of_networks_and_volumes(image: str) -> None:
    """network create/connect/disconnect/destroy and volume create/destroy, in order, with
    filters, read by later processes."""
    since = f"{time.time():.9f}"
    nid = berth("network", "create", "--subnet", "10.238.0.0/24", "evnet").stdout.strip()
    berth("volume", "create", "evvol")
    berth("run", "--rm", "--network", "evnet", "-v", "evvol:/data", image, "true")
    berth("create", "--name", "evc", "--network", "none", image, "true")
    berth("run", "-d", "--name", "evd", "--network", "evnet", image, "sleep", "30")
    berth("network", "disconnect", "evnet", "evd")
    berth("rm", "-f", "evd", "evc")
    berth("network", "rm", "evnet")
    berth("volume", "rm", "evvol")
    until = f"{time.time():.9f}"

    def events(*extra: str) -> list[str]:
        return berth("events", "--since", since, "--until", until, "--format",
                     "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}", *extra
                     ).stdout.splitlines()

    assert events("--filter", "type=network") == [
        "network create evnet", "network connect evnet", "network disconnect evnet",
        "network connect evnet", "network disconnect evnet", "network destroy evnet"]
    assert berth("events", "--since", since, "--until", until, "--filter", "type=volume",
                 "--filter", "event=create", "--filter", "event=destroy", "--format",
                 "{{.Action}} {{.Actor.ID}} {{.Actor.Attributes.driver}}").stdout.splitlines() \
        == ["create evvol local", "destroy evvol local"]  # docker: the name is the id
    assert events("--filter", f"network={nid[:10]}", "--filter", "event=destroy") == [
        "network destroy evnet"]
    assert events("--filter", "volume=evvol", "--filter", "type=network") == []
    connects = berth("events", "--since", since, "--until", until, "--filter",
                     "event=connect", "--format", "{{.Actor.ID}} {{.Actor.Attributes.container}}"
                     ).stdout.split()
    assert connects[0] == nid and len(connects) == 4
