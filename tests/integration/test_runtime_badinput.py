"""Invalid bundles: `berth-runtime create` refuses each with a clear error that names the
field, and leaves nothing behind — no state directory under --root, no cgroup, no process,
no mount (the berth_env fixture checks the machine once more after each test).

The cases fail at different stages: while parsing config.json, in the checks made before any
fork, and in the container's init after the cgroup and the namespaces exist; the clean-up has
to be complete from each of them.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers.bundle import read_config, write_config
from helpers.runtime import assert_nothing_left, remove_leftovers, rt  # noqa: F401

Config = dict[str, Any]


def _set(path: str, value: Any) -> Callable[[Config], None]:
    """A mutation: set config[a][b]... (path "a.b") to value."""
    def apply(c: Config) -> None:
        *parents, last = path.split(".")
        for p in parents:
            c = c[p]
        c[last] = value
    return apply


def _drop(key: str) -> Callable[[Config], None]:
    return lambda c: c.pop(key)


def _append(path: str, item: Any) -> Callable[[Config], None]:
    def apply(c: Config) -> None:
        for p in path.split("."):
            c = c[p]
        c.append(item)  # type: ignore[attr-defined]
    return apply


CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

# id -> (mutation of the default config, text the error must contain)
PARSE_CASES: dict[str, tuple[Callable[[Config], None], list[str]]] = {
    "no-ociversion": (_drop("ociVersion"), ["ociVersion"]),
    "ociversion-2": (_set("ociVersion", "2.0.0"), ["ociVersion", "2.0.0"]),
    "no-root": (_drop("root"), ["root"]),
    "args-empty": (_set("process.args", []), ["process.args"]),
    "args-not-strings": (_set("process.args", ["sh", 3]), ["process.args[1]"]),
    "cwd-relative": (_set("process.cwd", "tmp"), ["process.cwd", "absolute"]),
    "env-no-equals": (_append("process.env", "JUSTANAME"), ["process.env[2]"]),
    "uid-negative": (_set("process.user", {"uid": -1, "gid": 0}), ["process.user.uid"]),
    "umask-too-big": (_set("process.user", {"uid": 0, "gid": 0, "umask": 4096}),
                      ["process.user.umask"]),
    "unknown-capability": (_set("process.capabilities.bounding", CAPS + ["CAP_FLY"]),
                           ["process.capabilities.bounding[3]", "CAP_FLY"]),
    "unknown-capability-set": (_set("process.capabilities.magic", CAPS),
                               ["process.capabilities.magic"]),
    "unknown-rlimit": (_set("process.rlimits", [{"type": "RLIMIT_FOO", "soft": 1, "hard": 1}]),
                       ["process.rlimits[0].type", "RLIMIT_FOO"]),
    "rlimit-soft-above-hard": (_set("process.rlimits", [
        {"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024}]), ["process.rlimits[0]"]),
    "oom-score-out-of-range": (_set("process.oomScoreAdj", 5000), ["process.oomScoreAdj"]),
    "namespace-type": (_set("linux.namespaces", [{"type": "pid"}, {"type": "netz"}]),
                       ["linux.namespaces[1].type", "netz"]),
    "namespace-twice": (_set("linux.namespaces", [{"type": "pid"}, {"type": "mount"},
                                                  {"type": "pid"}]),
                        ["linux.namespaces[2].type"]),
    "namespace-path-relative": (_set("linux.namespaces", [
        {"type": "mount"}, {"type": "network", "path": "proc/1/ns/net"}]),
        ["linux.namespaces[1].path"]),
    "mount-destination-relative": (_append("mounts", {"destination": "mnt", "type": "tmpfs",
                                                      "source": "tmpfs"}),
                                   ["mounts[7].destination"]),
    "mount-options-not-list": (_append("mounts", {"destination": "/mnt", "type": "tmpfs",
                                                  "source": "tmpfs", "options": "ro"}),
                               ["mounts[7].options"]),
    "hook-path-relative": (_set("hooks", {"prestart": [{"path": "bin/true"}]}),
                           ["hooks.prestart[0].path"]),
    "hook-kind-unknown": (_set("hooks", {"preStart": [{"path": "/bin/true"}]}),
                          ["hooks.preStart"]),
    "hook-timeout-zero": (_set("hooks", {"poststart": [{"path": "/bin/true", "timeout": 0}]}),
                          ["hooks.poststart[0].timeout"]),
    "device-type": (_set("linux.devices", [{"path": "/dev/x", "type": "x", "major": 1,
                                            "minor": 3}]), ["linux.devices[0].type"]),
    "rootfs-propagation": (_set("linux.rootfsPropagation", "sideways"),
                           ["linux.rootfsPropagation", "sideways"]),
    "uidmappings-without-userns": (_set("linux.uidMappings", [
        {"containerID": 0, "hostID": 100000, "size": 10}]), ["linux.uidMappings"]),
    "hostname-without-uts": (_set("linux.namespaces", [{"type": "pid"}, {"type": "mount"}]),
                             ["hostname", "uts"]),
    "memory-limit-string": (_set("linux.resources", {"memory": {"limit": "lots"}}),
                            ["linux.resources.memory.limit"]),
    "cgroupspath-dotdot": (_set("linux.cgroupsPath", "/berth/../../escape"),
                           ["linux.cgroupsPath"]),
    "sysctl-host-wide": (_set("linux.sysctl", {"vm.swappiness": "1"}),
                         ["linux.sysctl.vm.swappiness"]),
    "seccomp-action": (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_SOMETIMES"}),
                       ["linux.seccomp.defaultAction"]),
    "capability-not-in-host-bounding-set": (
        _set("process.capabilities.bounding", CAPS + ["CAP_SYS_RESOURCE"]),
        ["process.capabilities.bounding", "CAP_SYS_RESOURCE"]),
}


def _create(rt, b: Path, cid: str) -> Any:
    proc = rt("create", "--bundle", str(b), cid, check=False)
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 3, f"not one clear error:\n{proc.stderr}"
    return proc


@pytest.mark.parametrize("case", sorted(PARSE_CASES))
def test_invalid_config_is_refused(rt, bundle, case):
    mutate, expected = PARSE_CASES[case]
    b = bundle(["true"])
    config = read_config(b)
    mutate(config)
    write_config(b, config)
    cid = f"bad-{case}"
    proc = _create(rt, b, cid)
    for text in expected:
        assert text in proc.stderr, f"{case}: {text!r} not in {proc.stderr!r}"
    assert_nothing_left(rt, cid, b)


def test_invalid_json(rt, bundle):
    b = bundle(["true"])
    text = json.dumps(read_config(b))
    (b / "config.json").write_text(text[:-20])  # cut short
    proc = _create(rt, b, "bad-json")
    assert "config.json" in proc.stderr and "JSON" in proc.stderr
    assert_nothing_left(rt, "bad-json", b)


def test_missing_config_json(rt, bundle):
    b = bundle(["true"])
    (b / "config.json").unlink()
    proc = _create(rt, b, "bad-noconfig")
    assert "config.json" in proc.stderr and str(b) in proc.stderr
    assert_nothing_left(rt, "bad-noconfig", b)


def test_root_path_missing(rt, bundle):
    b = bundle(["true"], root={"path": "no-such-rootfs"})
    proc = _create(rt, b, "bad-rootpath")
    assert "root.path" in proc.stderr and "no-such-rootfs" in proc.stderr
    assert_nothing_left(rt, "bad-rootpath", b)


# Failures after the state directory, the cgroup and the init exist.

def test_namespace_path_that_does_not_exist(rt, bundle):
    b = bundle(["true"], linux={"namespaces": [
        {"type": "pid"}, {"type": "mount"}, {"type": "uts"},
        {"type": "network", "path": "/proc/999999999/ns/net"}]})
    proc = _create(rt, b, "bad-nspath")
    assert "linux.namespaces" in proc.stderr and "/proc/999999999/ns/net" in proc.stderr
    assert_nothing_left(rt, "bad-nspath", b)


def test_bind_mount_source_that_does_not_exist(rt, bundle, berth_env):
    missing = berth_env.tmp / "no-such-dir"
    config_mounts = read_config(bundle(["true"], name="probe"))["mounts"]
    b = bundle(["true"], mounts=config_mounts + [
        {"destination": "/data", "type": "bind", "source": str(missing), "options": ["bind"]}])
    proc = _create(rt, b, "bad-bindsrc")
    assert "mounts[7]" in proc.stderr and "/data" in proc.stderr
    assert_nothing_left(rt, "bad-bindsrc", b)


def test_program_not_found(rt, bundle):
    b = bundle(["no-such-program", "arg"])
    proc = _create(rt, b, "bad-prog")
    assert "no-such-program" in proc.stderr
    assert_nothing_left(rt, "bad-prog", b)


def test_user_namespace_mapping_refused_by_the_kernel(rt, bundle):
    """Two uid mappings that overlap: the kernel refuses the uid_map write."""
    b = bundle(["true"], linux={
        "namespaces": [{"type": k} for k in ("pid", "ipc", "uts", "mount", "user")],
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 100},
                        {"containerID": 50, "hostID": 200000, "size": 100}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 100}]})
    try:
        proc = rt("create", "--bundle", str(b), "bad-uidmap", check=False, timeout=3)
    except subprocess.TimeoutExpired:
        remove_leftovers(rt, "bad-uidmap")
        pytest.fail("create hung after the kernel refused the uid mapping")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "linux.uidMappings" in proc.stderr
    assert_nothing_left(rt, "bad-uidmap", b)
