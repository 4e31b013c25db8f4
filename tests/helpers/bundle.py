"""OCI bundles for tests: a directory with config.json and rootfs/, as the runtime spec says.

The default config is what `runc spec` (runc 1.1.5) writes, with one change: process.terminal is
false, so a test can read the container's stdout through a pipe. The same bundle runs with runc,
crun and berth-runtime.

    default_config(args)                 a fresh dict (deep copy) of that config
    deep_merge(base, overrides)          a new dict: dicts merge key by key, anything else
                                         (lists included) replaces; DELETE removes a key
    make_bundle(dir, args, rootfs=None, **overrides) -> Path
                                         write dir/config.json and dir/rootfs (a copy of
                                         `rootfs`, or a new busybox tree when None)
    read_config(bundle) / write_config(bundle, config) / update_config(bundle, **overrides)

Example:
    make_bundle(tmp / "b", ["sh", "-c", "id -u"], process={"user": {"uid": 1000, "gid": 1000}},
                hostname="probe", root={"readonly": DELETE})
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .rootfs import copy_rootfs, make_rootfs


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"


DELETE: Any = _Delete()
"""Use as an override value to remove that key from the config."""

_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

# `runc spec` of runc 1.1.5 (Debian 12), terminal turned off.
_DEFAULT: dict[str, Any] = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh"],
        "env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "TERM=xterm",
        ],
        "cwd": "/",
        "capabilities": {
            "bounding": list(_CAPS),
            "effective": list(_CAPS),
            "permitted": list(_CAPS),
            "ambient": list(_CAPS),
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "runc",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    ],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [
            {"type": "pid"},
            {"type": "network"},
            {"type": "ipc"},
            {"type": "uts"},
            {"type": "mount"},
        ],
        "maskedPaths": [
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi",
        ],
        "readonlyPaths": [
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger",
        ],
    },
}


def default_config(args: Sequence[str] = ("sh",)) -> dict[str, Any]:
    """A new copy of the default config with process.args set to `args`."""
    if isinstance(args, str):
        raise TypeError("args is a list of words, not a string: use ['sh', '-c', '...']")
    config = copy.deepcopy(_DEFAULT)
    config["process"]["args"] = list(args)
    return config


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: `overrides` merged into `base`. Neither argument is changed.

    Mappings merge key by key, recursively; any other value (a list included) replaces the old
    one; the value DELETE removes the key.
    """
    merged: dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if value is DELETE:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = _strip_deletes(copy.deepcopy(value))
    return merged


def _strip_deletes(value: Any) -> Any:
    # DELETE inside a value that replaces (no old mapping to merge into) simply leaves the key out.
    if isinstance(value, Mapping):
        return {k: _strip_deletes(v) for k, v in value.items() if v is not DELETE}
    return value


def read_config(bundle: Path) -> dict[str, Any]:
    return json.loads((Path(bundle) / "config.json").read_text())


def write_config(bundle: Path, config: Mapping[str, Any]) -> Path:
    """Write config.json atomically (temp file + rename); return its path."""
    path = Path(bundle) / "config.json"
    tmp = path.with_name(".config.json.tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def update_config(bundle: Path, **overrides: Any) -> dict[str, Any]:
    """Deep-merge `overrides` into the bundle's config.json, write it and return the result."""
    config = deep_merge(read_config(bundle), overrides)
    write_config(bundle, config)
    return config


def make_bundle(
    dir: Path, args: Sequence[str] = ("sh",), rootfs: Path | None = None, **overrides: Any
) -> Path:
    """Write an OCI bundle into `dir` (created) and return `dir`.

    rootfs: a built rootfs to copy into dir/rootfs (as the fixtures pass the session's cached one);
    if it already is dir/rootfs it is used in place; None builds a new busybox tree.
    overrides: deep-merged into default_config(args), e.g. process={"cwd": "/tmp"}.
    """
    bundle = Path(dir)
    bundle.mkdir(parents=True, exist_ok=True)
    target = bundle / "rootfs"
    if rootfs is None:
        make_rootfs(target)
    elif Path(rootfs).resolve() != target.resolve():
        copy_rootfs(Path(rootfs), target)
    config = deep_merge(default_config(args), overrides)
    write_config(bundle, config)
    return bundle
