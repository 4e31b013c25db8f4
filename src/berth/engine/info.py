"""What `GET /info` and `GET /version` answer, and `berth info` / `berth version` print.

    system_info(engine)    docker's system.Info document (its JSON names, in its order)
    server_version()       docker's types.Version document for the embedded engine

Fast on purpose: the counts come from berth.db (one query each, plus a freezer read per running
container to tell paused ones apart), the host facts from a few small files under /proc and
/sys; nothing walks the store.
"""

from __future__ import annotations

import os
import sys
from typing import Any

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.engine.containers import Engine

__all__ = ["API_VERSION", "MIN_API_VERSION", "backing_filesystem", "os_arch", "server_version",
           "system_info"]

# The Engine API version berth's daemon is written against, and the oldest it accepts.
API_VERSION = "1.45"
MIN_API_VERSION = "1.24"

# statfs names as docker's FsNames spells them, for the mount types that differ
_FS_NAMES = {"ext2": "extfs", "ext3": "extfs", "ext4": "extfs", "overlay": "overlayfs",
             "nfs4": "nfs", "cifs": "smb", "smb3": "smb", "fuseblk": "fuse"}


def os_arch() -> str:
    """GOARCH of this machine: amd64, arm64, …"""
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x"}.get(m, m)


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
        .replace("\\134", "\\")


def backing_filesystem(path: str, mountinfo: str | None = None) -> str:
    """The filesystem `path` lives on, named as docker's "Backing Filesystem" names it
    ("extfs", "xfs", "btrfs", "tmpfs", "overlayfs"…), from the mount table: the last mount
    whose point is the longest prefix of the path."""
    if mountinfo is None:
        try:
            with open("/proc/self/mountinfo") as f:
                mountinfo = f.read()
        except OSError:
            return "<unknown>"
    target = os.path.realpath(path) if os.path.isabs(path) else path
    best, fstype = -1, "<unknown>"
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        point = _unescape(fields[4])
        kind = line.split(" - ", 1)[1].split()[0]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best:
            best, fstype = len(point), kind
    if fstype.startswith("fuse."):
        return "fuse"
    return _FS_NAMES.get(fstype, fstype)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _operating_system() -> str:
    for line in _read("/etc/os-release").splitlines():
        key, _, value = line.partition("=")
        if key == "PRETTY_NAME":
            return value.strip().strip('"')
    return "<unknown>"


def _mem_total() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _ncpu() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except OSError:
        return os.cpu_count() or 1


def _cgroup_version() -> str:
    from berth.runtime.cgroups.layout import read_layout
    return "2" if read_layout().mode == "v2" else "1"


def _engine_id(root: str) -> str:
    """A UUID kept in `<root>/engine-id` (docker keeps one in /var/lib/docker/engine-id),
    made the first time it is asked for."""
    path = os.path.join(root, "engine-id")
    got = _read(path).strip()
    if got:
        return got
    import uuid
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(str(uuid.uuid4()) + "\n")
        try:
            os.link(tmp, path)  # the first writer wins; a concurrent one reads its id
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    except OSError:
        return ""
    return _read(path).strip()


def _counts(engine: Engine) -> tuple[int, int, int, int]:
    """(containers, running, paused, stopped) as docker counts them: paused is a running
    container whose cgroup is frozen; created, exited, dead and restarting are stopped."""
    total = engine.db.read("SELECT count(*) FROM containers")[0][0]
    running = paused = 0
    for c in engine.list():
        if engine.paused(c):
            paused += 1
        else:
            running += 1
    return total, running, paused, max(total - running - paused, 0)


def system_info(engine: Engine) -> dict[str, Any]:
    """docker's system.Info for this engine (what `GET /info` returns)."""
    from berth import __version__
    total, running, paused, stopped = _counts(engine)
    images = engine.db.read("SELECT count(*) FROM images")[0][0]
    root = str(engine.root)
    metacopy = _read("/sys/module/overlay/parameters/metacopy").strip() in ("Y", "y", "1")
    return {
        "ID": _engine_id(root),
        "Containers": total,
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": stopped,
        "Images": images,
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", backing_filesystem(root)],
                         ["Supports d_type", "true"],
                         ["Using metacopy", "true" if metacopy else "false"],
                         ["Native Overlay Diff", "true"],
                         ["userxattr", "false"]],
        "Plugins": {"Volume": ["local"], "Network": ["host", "null"], "Authorization": None,
                    "Log": ["json-file"]},
        "MemoryLimit": True,
        "SwapLimit": True,
        "CpuCfsPeriod": True,
        "CpuCfsQuota": True,
        "CPUShares": True,
        "CPUSet": True,
        "PidsLimit": True,
        "IPv4Forwarding": _read("/proc/sys/net/ipv4/ip_forward").strip() == "1",
        "Debug": False,
        "NFd": len(os.listdir("/proc/self/fd")),
        "OomKillDisable": False,
        "NGoroutines": 1,
        "SystemTime": _now_rfc3339(),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": _cgroup_version(),
        "NEventsListener": 0,
        "KernelVersion": os.uname().release,
        "OperatingSystem": _operating_system(),
        "OSVersion": _os_version(),
        "OSType": "linux",
        "Architecture": os.uname().machine,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": None,
        "NCPU": _ncpu(),
        "MemTotal": _mem_total(),
        "GenericResources": None,
        "DockerRootDir": root,
        "HttpProxy": os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy") or "",
        "HttpsProxy": os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or "",
        "NoProxy": os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or "",
        "Name": os.uname().nodename,
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": __version__,
        "Runtimes": _runtimes(),
        "DefaultRuntime": "berth",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
                  "ControlAvailable": False, "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True,  # containers outlive the CLI: each has its own monitor
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""},
        "InitCommit": {"ID": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "CDISpecDirs": [],
        "Warnings": None,
    }


def _now_rfc3339() -> str:
    import time
    ns = time.time_ns()
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + \
        (f".{frac}" if frac else "") + "Z"


def _os_version() -> str:
    for line in _read("/etc/os-release").splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_ID":
            return value.strip().strip('"')
    return ""


def server_version() -> dict[str, Any]:
    """docker's types.Version of the embedded engine (what `GET /version` returns)."""
    from berth import __version__
    kernel = os.uname().release
    python = "%d.%d.%d" % sys.version_info[:3]
    return {
        "Platform": {"Name": "berth"},
        "Components": [
            {"Name": "Engine", "Version": __version__, "Details": {
                "ApiVersion": API_VERSION, "Arch": os_arch(), "BuildTime": "",
                "Experimental": "false", "GitCommit": "", "GoVersion": "",
                "KernelVersion": kernel, "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
                "PythonVersion": python}},
            {"Name": "berth-runtime", "Version": __version__, "Details": {
                "OCIVersion": "1.0.2"}},
        ],
        "Version": __version__,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": os_arch(),
        "KernelVersion": kernel,
        "Experimental": False,
        "BuildTime": "",
    }


def _runtimes() -> dict[str, dict[str, str]]:
    """The runtimes `--runtime` can name on this machine (engine/runtimes.py)."""
    from .runtimes import available
    return {name: {"path": path} for name, path in available().items()}
