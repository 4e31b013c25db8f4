"""The berth CLI as the integration tests run it: `python -m berth.cli.main` of this checkout,
with the test's own BERTH_ROOT and BERTH_RUN (set by the berth_env fixture)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

BERTH = [sys.executable, "-m", "berth.cli.main"]


def berth(*args: str, check: bool = True, timeout: float = 60, input: bytes | None = None,
          text: bool = True) -> subprocess.CompletedProcess:
    """Run one berth command; `check`: it must exit 0 (stdout and stderr in the message).
    With `text` (default) stdout and stderr are str, also when `input` is bytes."""
    r = subprocess.run([*BERTH, *args], capture_output=True, timeout=timeout, input=input)
    out = subprocess.CompletedProcess(r.args, r.returncode, r.stdout, r.stderr)
    if text:
        out.stdout = r.stdout.decode(errors="replace")
        out.stderr = r.stderr.decode(errors="replace")
    if check:
        assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")
    return out


def remove_all_containers() -> None:
    ids = berth("ps", "-aq", check=False).stdout.split()
    if ids:
        berth("rm", "-f", *ids, check=False)


def ip_of(container: str, network: str) -> str:
    """The running container's address on `network`, as `network inspect` shows it."""
    doc = json.loads(berth("network", "inspect", network).stdout)[0]
    for c in doc["Containers"].values():
        if c["Name"] == container:
            return str(c["IPv4Address"].split("/")[0])
    raise AssertionError(f"{container} not on {network}: {doc['Containers']}")


def pids_running(*argv: str) -> list[int]:
    """The processes of this machine whose command line is `argv`, exactly (what a container
    left behind, found from the host)."""
    want = "".join(a + "\0" for a in argv).encode()
    found = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    if f.read() == want:
                        found.append(int(p))
            except OSError:
                continue
    return found
