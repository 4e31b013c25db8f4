"""Same bundle, same result: what a container sees under runc and under berth-runtime.

One bundle, as docker would hand it to a runtime: busybox rootfs, the `runc spec` config with
hostname "probe", docker's default capabilities in every set but ambient, docker's default
seccomp profile (berth.runtime.seccomp.default_profile for that bounding set) and an absolute
linux.cgroupsPath that is new for every run. The probe (helpers/probe.py) runs as its PID 1 and
prints what it sees in labelled sections; each runtime runs the bundle once per module (results
are cached), once more without linux.seccomp, and once with `sleep` as PID 1 and the probe
started by `exec`.

Each test covers one topic, for each runtime: first what the config itself demands (run on runc,
this checks the test), then, for berth-runtime, that its sections equal runc's once what
legitimately differs is normalised away (mount ids, device numbers of anonymous filesystems, the
cgroup path, times, the pids of the probe's own processes). A failure shows a diff per section.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from berth.runtime.capabilities import DOCKER_DEFAULT
from berth.runtime.seccomp import default_profile
from helpers import probe
from helpers.bundle import make_bundle, read_config, write_config
from oci_runtimes import (RUNTIMES, Result, make_runtime, runtime_binary, unique_cgroups_path,
                          unique_id)

# Bit numbers from linux/capability.h, written out here rather than taken from berth's tables.
CAP_BITS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
    "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_RAW": 13, "CAP_SYS_CHROOT": 18, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29,
    "CAP_SETFCAP": 31,
}
DOCKER_CAPS = list(DOCKER_DEFAULT)
DOCKER_MASK = f"{sum(1 << CAP_BITS[c] for c in DOCKER_CAPS):016x}"

# default: the probe is PID 1 (`run`); no-seccomp: the same without linux.seccomp; exec: PID 1
# is `sleep`, and the probe comes in with `exec`.
VARIANTS = ("default", "no-seccomp", "exec")
EXEC_PID1 = ["sleep", "60"]


def config_overrides(variant: str) -> dict:
    caps = {"bounding": DOCKER_CAPS, "effective": DOCKER_CAPS, "permitted": DOCKER_CAPS,
            "inheritable": DOCKER_CAPS, "ambient": []}
    linux: dict = {}
    if variant != "no-seccomp":
        linux["seccomp"] = default_profile(DOCKER_CAPS)
    return {"hostname": "probe", "process": {"capabilities": caps}, "linux": linux}


@dataclass
class ProbeRun:
    runtime: str
    variant: str
    cgroups_path: str
    result: Result
    sections: dict[str, list[str]] = field(default_factory=dict)

    def section(self, name: str) -> list[str]:
        if name not in self.sections:
            pytest.fail(f"{self.runtime} ({self.variant}): the probe printed no section "
                        f"{name!r}\n{self.result.describe()}", pytrace=False)
        return self.sections[name]


class Probes:
    """Runs the probe bundle once per (runtime, variant) and keeps the answers.

    Both runtimes run the very same bundle directory (so the root of / in mountinfo is the same
    path); only linux.cgroupsPath is rewritten before each run.
    """

    def __init__(self, base: Path, rootfs_cache: Path) -> None:
        self.base = base
        self.rootfs_cache = rootfs_cache
        self.bundles: dict[str, Path] = {}
        self.runs: dict[tuple[str, str], ProbeRun] = {}

    def bundle(self, variant: str) -> Path:
        if variant not in self.bundles:
            args = EXEC_PID1 if variant == "exec" else probe.PROBE_ARGS
            path = make_bundle(self.base / f"bundle-{variant}", args,
                               rootfs=self.rootfs_cache, **config_overrides(variant))
            probe.install_probe(path / "rootfs")
            self.bundles[variant] = path
        return self.bundles[variant]

    def get(self, runtime: str, variant: str = "default") -> ProbeRun:
        key = (runtime, variant)
        if key not in self.runs:
            rt = make_runtime(runtime, self.base / f"{runtime}-root")
            bundle = self.bundle(variant)
            config = read_config(bundle)
            cgroups_path = unique_cgroups_path()
            config["linux"]["cgroupsPath"] = cgroups_path
            write_config(bundle, config)
            cid = unique_id()
            if variant == "exec":
                try:
                    started = rt.run_detached(cid, bundle)
                    result = (rt.exec(cid, *probe.PROBE_ARGS) if started.returncode == 0
                              else started)
                finally:
                    rt.delete(cid)
            else:
                result = rt.run(cid, bundle)
            self.runs[key] = ProbeRun(runtime, variant, cgroups_path, result,
                                      probe.parse_sections(result.stdout))
        run = self.runs[key]
        if run.result.returncode != 0 or "end" not in run.sections:
            pytest.fail(f"{runtime} ({variant}): the probe did not run to its end\n"
                        f"{run.result.describe()}", pytrace=False)
        return run


@pytest.fixture(scope="module")
def probes(rootfs_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probes]:
    yield Probes(tmp_path_factory.mktemp("same-as-runc"), rootfs_cache)


Normaliser = Callable[[ProbeRun, str], list[str]]


def as_is(run: ProbeRun, name: str) -> list[str]:
    return run.section(name)


def by_rows(fn: Callable[[list[str]], list[str]]) -> Normaliser:
    return lambda run, name: fn(run.section(name))


def with_cgroup(fn: Callable[[list[str], str | None], list[str]]) -> Normaliser:
    return lambda run, name: fn(run.section(name), run.cgroups_path)


@dataclass
class Case:
    """One runtime's answers, and runc's to compare them with (None for runc itself, or when
    runc is not installed)."""

    runtime: str
    probes: Probes

    def run(self, variant: str = "default") -> ProbeRun:
        return self.probes.get(self.runtime, variant)

    def reference(self, variant: str = "default") -> ProbeRun | None:
        if self.runtime == "runc" or runtime_binary("runc") is None:
            return None
        return self.probes.get("runc", variant)

    def assert_same_as_runc(self, sections: dict[str, Normaliser],
                            variant: str = "default") -> None:
        ref = self.reference(variant)
        if ref is None:
            return
        mine = self.run(variant)
        diffs = []
        for name, norm in sections.items():
            a, b = norm(ref, name), norm(mine, name)
            if a != b:
                diff = "\n".join(difflib.unified_diff(a, b, f"runc/{name}",
                                                      f"{self.runtime}/{name}", lineterm="", n=2))
                diffs.append(diff)
        if diffs:
            pytest.fail(f"{self.runtime} differs from runc on the same bundle ({variant}):\n\n"
                        + "\n\n".join(diffs), pytrace=False)


@pytest.fixture(params=RUNTIMES)
def case(request: pytest.FixtureRequest, probes: Probes, berth_env) -> Case:
    if request.param == "runc" and runtime_binary("runc") is None:
        pytest.skip("runc is not installed")
    return Case(request.param, probes)


def cgroup_files(run: ProbeRun, name: str) -> list[str]:
    # devices.list holds the same rules in the order they were written: compare them as a set.
    out = []
    for line in run.section(name):
        key, _, value = line.partition(": ")
        if key.endswith("devices.list"):
            value = ";".join(sorted(r for r in value.split(";") if r))
        out.append(f"{key}: {value}")
    return out


def dirs(run: ProbeRun, name: str) -> list[str]:
    # The link count of /proc counts every process of the machine (nr_processes()).
    out = []
    for row in probe.ls_rows(run.section(name)):
        f = row.split(" ")
        if f[-1] == "/proc":
            f[1] = "N"
        out.append(" ".join(f))
    return out


# How each section is compared; sections not named here are compared as they are.
NORMALISE: dict[str, Normaliser] = {
    "ps": by_rows(probe.ps_rows),
    "mountinfo": with_cgroup(probe.mountinfo_rows),
    "mounts": with_cgroup(probe.mounts_rows),
    "dev": by_rows(probe.ls_rows),
    "dev_pts": by_rows(probe.ls_rows),
    "dirs": dirs,
    "cgroup": with_cgroup(probe.cgroup_rows),
    "cgroup_files": cgroup_files,
}


def compared(*names: str) -> dict[str, Normaliser]:
    return {n: NORMALISE.get(n, as_is) for n in names}


# --- the topics ----------------------------------------------------------------------------------

def test_capabilities_no_new_privs_and_seccomp(case: Case) -> None:
    st = probe.status_fields(case.run().section("status"))
    want = {"CapInh": DOCKER_MASK, "CapPrm": DOCKER_MASK, "CapEff": DOCKER_MASK,
            "CapBnd": DOCKER_MASK, "CapAmb": "0" * 16, "NoNewPrivs": "1", "Seccomp": "2"}
    got = {k: st.get(k) for k in want}
    assert got == want, f"{case.runtime}: /proc/self/status of the container process"
    assert int(st.get("Seccomp_filters", "0")) >= 1, st
    case.assert_same_as_runc(compared("status"))


def test_identity_environment_and_pid1(case: Case) -> None:
    run = case.run()
    assert run.section("id")[0].startswith("uid=0(root) gid=0(root)"), run.section("id")
    st = probe.status_fields(run.section("status_pid1"))
    assert st["Uid"].split() == ["0"] * 4 and st["Gid"].split() == ["0"] * 4, st
    assert st["Groups"] == "", f"no additionalGids in the config: {st['Groups']}"
    assert st["SigBlk"] == "0" * 16, "PID 1 starts with signals blocked"
    assert run.section("hostname") == ["probe"]
    assert run.section("pid1_cmdline") == [" ".join(probe.PROBE_ARGS)]
    env = read_config(case.probes.bundle("default"))["process"]["env"]
    assert sorted(run.section("environ")) == sorted([*env, "HOME=/root"])
    assert run.section("cwd_umask") == ["/", "0022"]
    case.assert_same_as_runc(compared("id", "status_pid1", "hostname", "pid1_cmdline", "environ",
                                      "cwd_umask", "oom_score_adj"))


def test_process_list_and_descriptors(case: Case) -> None:
    # The shell is PID 1 and `ps` its only child: nothing of the runtime is left in the
    # container's pid namespace. PID 1 holds stdio and, at 10, the script ash is reading.
    run = case.run()
    assert probe.ps_rows(run.section("ps")) == ["PID COMMAND", "1 sh", "N ps"]
    assert set(run.section("fds_pid1")) <= {"0", "1", "2", "10"}, run.section("fds_pid1")
    case.assert_same_as_runc(compared("ps", "fds_pid1"))


def _rows_by_point(run: ProbeRun) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in probe.mountinfo_rows(run.section("mountinfo"), run.cgroups_path):
        out.setdefault(row.split(" ", 1)[0], []).append(row)
    return out


def test_mount_table(case: Case) -> None:
    run = case.run()
    points = _rows_by_point(run)
    config = read_config(case.probes.bundle("default"))
    for m in config["mounts"]:
        rows = points.get(m["destination"])
        assert rows, f"{m['destination']} is not mounted: {sorted(points)}"
        if m["type"] != "cgroup":  # a v1 host gets a tmpfs with one bind per hierarchy there
            assert any(f" {m['type']} " in r for r in rows), rows
    assert points["/"][-1].split(" opts=")[1].startswith("ro,"), "root.readonly is true"
    for path in config["linux"]["readonlyPaths"]:
        for row in points.get(path, []):
            assert " opts=ro," in row, f"{path} is in readonlyPaths: {row}"
    for path in config["linux"]["maskedPaths"]:
        for row in points.get(path, []):
            masked = " root=/null " in row or (" tmpfs " in row and " opts=ro," in row)
            assert masked, f"{path} is in maskedPaths: {row}"
    case.assert_same_as_runc(compared("mountinfo", "mounts", "dirs"))


DEVICES = {"null": "1,3", "zero": "1,5", "full": "1,7", "random": "1,8", "urandom": "1,9",
           "tty": "5,0"}


def test_dev(case: Case) -> None:
    run = case.run()
    rows = {r.split(" -> ")[0].rsplit(" ", 1)[-1]: r for r in probe.ls_rows(run.section("dev"))}
    for name, numbers in DEVICES.items():
        assert name in rows, f"/dev/{name} missing: {sorted(rows)}"
        assert rows[name].startswith("crw-rw-rw- ") and f" {numbers} " in rows[name], rows[name]
    for link, target in (("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"),
                         ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        assert rows.get(link, "").endswith(f"{link} -> {target}"), rows.get(link)
    assert run.section("dev_dirs") == ["/dev/pts dir", "/dev/shm dir", "/dev/mqueue dir"]
    assert any(r.startswith("c") and " 5,2 ptmx" in r
               for r in probe.ls_rows(run.section("dev_pts"))), run.section("dev_pts")
    case.assert_same_as_runc(compared("dev", "dev_pts", "dev_dirs"))


def test_device_cgroup_denies_other_devices(case: Case) -> None:
    """CAP_MKNOD makes the node, the device cgroup (linux.resources.devices: deny all, plus the
    runtime's defaults) refuses to open it: the disk that holds the rootfs cannot be read."""
    lines = case.run().section("block_device")
    assert lines[0] == "mknod-ok", lines
    assert probe.outcome(lines) not in (None, 0), f"the host's disk was readable: {lines}"
    case.assert_same_as_runc(compared("block_device"))


def test_cgroups(case: Case) -> None:
    run = case.run()
    lines = run.section("cgroup")
    assert lines and all(line.split(":", 2)[2] == run.cgroups_path for line in lines), (
        f"PID 1 is not in linux.cgroupsPath {run.cgroups_path} everywhere: {lines}")
    assert run.section("sys_fs_cgroup"), "/sys/fs/cgroup is empty"
    for line in run.section("cgroup_write")[1:]:
        assert not line.endswith(" exit=0"), f"a cgroup hierarchy is writable: {line}"
    case.assert_same_as_runc(compared("cgroup", "sys_fs_cgroup", "cgroup_files",
                                      "cgroup_write"))


def test_ulimits(case: Case) -> None:
    lines = case.run().section("ulimit")
    assert any(line.startswith("open files") and line.endswith(" 1024") for line in lines), lines
    case.assert_same_as_runc(compared("ulimit"))


def test_network_namespace(case: Case) -> None:
    lines = case.run().section("net")
    assert len(lines) == 1 and lines[0].startswith("1: lo: <LOOPBACK,UP,"), lines
    case.assert_same_as_runc(compared("net"))


def test_proc_and_sys_are_protected(case: Case) -> None:
    run = case.run()
    for name in ("write_proc_sys", "write_proc_sys_other", "create_in_sys"):
        status = probe.outcome(run.section(name))
        assert status not in (None, 0), f"{name} succeeded: {run.section(name)}"
    sysrq = run.section("sysrq_trigger")
    assert sysrq == ["absent"] or probe.outcome(sysrq) not in (None, 0), sysrq
    assert run.section("kcore") in (["absent"], ["size=0"]), run.section("kcore")
    case.assert_same_as_runc(compared("write_proc_sys", "write_proc_sys_other", "create_in_sys",
                                      "sysrq_trigger", "kcore"))


def test_seccomp_is_told_apart_from_capabilities(case: Case) -> None:
    """`unshare -U` needs no capability, only the syscall: the default profile refuses it (it
    allows unshare only with CAP_SYS_ADMIN), the same capabilities without a profile allow it."""
    with_profile, without = case.run("default"), case.run("no-seccomp")
    if with_profile.section("unshare_user") == ["no-applet"]:
        pytest.skip("this busybox has no unshare applet")
    assert probe.outcome(with_profile.section("unshare_user")) not in (None, 0), (
        f"unshare -U succeeded under docker's default profile: "
        f"{with_profile.section('unshare_user')}")
    assert probe.outcome(without.section("unshare_user")) == 0, (
        f"unshare -U failed without a seccomp profile: {without.section('unshare_user')}")
    st = probe.status_fields(without.section("status"))
    assert st.get("Seccomp") == "0" and st.get("CapEff") == DOCKER_MASK, st
    case.assert_same_as_runc(compared("unshare_user", "status"), variant="default")
    case.assert_same_as_runc(compared("unshare_user", "status"), variant="no-seccomp")


def test_exec_gets_what_run_gets(case: Case) -> None:
    """A process started with `exec` in a running container: same capabilities, seccomp,
    no_new_privs, cgroup, environment and limits as the container's own process."""
    run, ex = case.run("default"), case.run("exec")
    for name in ("status", "id", "environ", "cwd_umask", "ulimit", "unshare_user", "net"):
        assert ex.section(name) == run.section(name), f"exec differs from run in {name!r}"
    assert probe.ps_rows(ex.section("ps")) == ["PID COMMAND", "1 sleep", "N sh", "N ps"]
    assert ex.section("fds_pid1") == ["0", "1", "2"], "the container's init holds more than stdio"
    assert ex.section("pid1_cmdline") == [" ".join(EXEC_PID1)]
    assert all(line.split(":", 2)[2] == ex.cgroups_path for line in ex.section("cgroup"))
    case.assert_same_as_runc(compared(*ex.sections), variant="exec")


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_section_same_as_runc(case: Case, variant: str) -> None:
    """The probe's whole output, section by section, so that no section goes unchecked."""
    if case.runtime == "runc":
        assert {"status", "mountinfo", "end"} <= set(case.run(variant).sections)
        return
    ref = case.reference(variant)
    if ref is None:
        pytest.skip("runc is not installed: nothing to compare with")
    assert list(case.run(variant).sections) == list(ref.sections), "other sections printed"
    case.assert_same_as_runc(compared(*ref.sections), variant=variant)
