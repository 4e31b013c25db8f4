"""Seccomp profiles, validation and filter building, without loading anything in the kernel."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from berth.errors import InvalidArgument, InvalidConfig, NotFound, RuntimeFailure
from berth.runtime import seccomp

DOCKER_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)


def allowed(profile: dict[str, Any], *, unconditional: bool = True) -> set[str]:
    """Names allowed by some rule (only rules without argument filters if unconditional)."""
    out: set[str] = set()
    for rule in profile["syscalls"]:
        if rule["action"] == "SCMP_ACT_ALLOW" and not (unconditional and rule.get("args")):
            out.update(rule["names"])
    return out


def rules_for(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in profile["syscalls"] if name in r["names"]]


# --- default profile resolution -------------------------------------------------------------

def test_default_profile_shape() -> None:
    prof = seccomp.default_profile(DOCKER_CAPS, "amd64", kernel=(6, 18))
    assert prof["defaultAction"] == "SCMP_ACT_ERRNO"
    assert prof["defaultErrnoRet"] == 1
    assert prof["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    for rule in prof["syscalls"]:
        assert set(rule) <= {"names", "action", "errnoRet", "args"}
    seccomp.validate(prof)
    json.dumps(prof)  # plain JSON data, ready for config.json


def test_without_sys_admin_namespaces_and_mounts_are_denied() -> None:
    prof = seccomp.default_profile(DOCKER_CAPS, "amd64", kernel=(6, 18))
    ok = allowed(prof)
    for name in ("unshare", "mount", "umount2", "setns", "fsopen", "move_mount", "bpf",
                 "sethostname", "clone3", "reboot", "init_module", "settimeofday", "kcmp"):
        assert name not in ok, name
    for name in ("read", "write", "getpid", "execve", "openat", "ptrace", "chroot"):
        assert name in ok, name
    # clone is allowed only without namespace flags (CLONE_NEWNS|NEWUTS|...|NEWUSER|NEWCGROUP)
    (clone,) = rules_for(prof, "clone")
    assert clone["args"] == [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]
    # clone3 cannot be filtered by flags, so it says ENOSYS and libc falls back to clone
    (clone3,) = rules_for(prof, "clone3")
    assert clone3["action"] == "SCMP_ACT_ERRNO" and clone3["errnoRet"] == 38


def test_with_sys_admin_namespaces_and_mounts_are_allowed() -> None:
    prof = seccomp.default_profile([*DOCKER_CAPS, "CAP_SYS_ADMIN"], "amd64", kernel=(6, 18))
    ok = allowed(prof)
    for name in ("unshare", "mount", "umount2", "setns", "clone", "clone3", "fsopen", "bpf"):
        assert name in ok, name
    assert all("args" not in r for r in rules_for(prof, "clone"))
    assert all(r["action"] == "SCMP_ACT_ALLOW" for r in rules_for(prof, "clone3"))


@pytest.mark.parametrize("cap, names", [
    ("CAP_SYS_PTRACE", ["kcmp", "pidfd_getfd", "process_madvise"]),
    ("CAP_SYS_MODULE", ["init_module", "finit_module", "delete_module"]),
    ("CAP_SYS_BOOT", ["reboot"]),
    ("CAP_SYS_TIME", ["settimeofday", "clock_settime"]),
    ("CAP_SYS_RAWIO", ["iopl", "ioperm"]),
    ("CAP_SYS_NICE", ["mbind", "set_mempolicy"]),
    ("CAP_DAC_READ_SEARCH", ["open_by_handle_at"]),
    ("CAP_SYSLOG", ["syslog"]),
    ("CAP_BPF", ["bpf"]),
    ("CAP_PERFMON", ["perf_event_open"]),
])
def test_capability_rules(cap: str, names: list[str]) -> None:
    without = allowed(seccomp.default_profile(DOCKER_CAPS, "amd64", kernel=(6, 18)))
    with_cap = allowed(seccomp.default_profile([*DOCKER_CAPS, cap], "amd64", kernel=(6, 18)))
    for name in names:
        assert name not in without and name in with_cap, name


def test_capability_spellings_are_normalised() -> None:
    assert "unshare" in allowed(seccomp.default_profile(["sys_admin"], "amd64", kernel=(6, 1)))
    assert "unshare" in allowed(seccomp.default_profile(["SYS_ADMIN"], "amd64", kernel=(6, 1)))


def test_min_kernel() -> None:
    old = allowed(seccomp.default_profile(DOCKER_CAPS, "amd64", kernel=(4, 7)))
    new = allowed(seccomp.default_profile(DOCKER_CAPS, "amd64", kernel=(4, 8)))
    assert "ptrace" not in old and "ptrace" in new


def test_personality_filters() -> None:
    prof = seccomp.default_profile(DOCKER_CAPS, "amd64", kernel=(6, 18))
    values = sorted(r["args"][0]["value"] for r in rules_for(prof, "personality"))
    assert values == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    assert "personality" not in allowed(prof)


def test_socket_families_alg_and_vsock_denied() -> None:
    prof = seccomp.default_profile(DOCKER_CAPS, "amd64", kernel=(6, 18))
    conds = sorted((r["args"][0]["op"], r["args"][0]["value"]) for r in rules_for(prof, "socket"))
    assert conds == [("SCMP_CMP_EQ", 39), ("SCMP_CMP_GT", 40), ("SCMP_CMP_LT", 38)]


@pytest.mark.parametrize("arch, arches, present, absent", [
    ("x86_64", ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
     ["arch_prctl", "modify_ldt"], ["cacheflush"]),
    ("aarch64", ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"], ["cacheflush", "set_tls"],
     ["arch_prctl", "modify_ldt"]),
    ("SCMP_ARCH_AARCH64", ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"], ["cacheflush"], []),
    ("s390x", ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"], ["s390_runtime_instr"], ["arch_prctl"]),
    ("riscv64", ["SCMP_ARCH_RISCV64"], ["riscv_flush_icache"], ["arch_prctl"]),
    ("ppc64le", [], ["swapcontext"], ["arch_prctl"]),  # docker's archMap has no ppc64le
])
def test_arches(arch: str, arches: list[str], present: list[str], absent: list[str]) -> None:
    prof = seccomp.default_profile(DOCKER_CAPS, arch, kernel=(6, 18))
    assert prof["architectures"] == arches
    ok = allowed(prof)
    assert all(n in ok for n in present) and not any(n in ok for n in absent)


def test_s390_clone_flags_are_the_second_argument() -> None:
    prof = seccomp.default_profile(DOCKER_CAPS, "s390x", kernel=(6, 18))
    (clone,) = rules_for(prof, "clone")
    assert clone["args"][0]["index"] == 1


def test_unknown_host_arch() -> None:
    with pytest.raises(InvalidArgument):
        seccomp.default_profile(DOCKER_CAPS, "vax")


def test_default_profile_results_are_independent() -> None:
    a = seccomp.default_profile(DOCKER_CAPS, "amd64")
    a["syscalls"][0]["names"].append("bogus")
    a["architectures"].clear()
    b = seccomp.default_profile(DOCKER_CAPS, "amd64")
    assert "bogus" not in b["syscalls"][0]["names"] and b["architectures"]


# --- docker-format profiles -----------------------------------------------------------------

DOCKER_FILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                 "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
    "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "always"},
        {"name": "getpid", "action": "SCMP_ACT_ALLOW"},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["cacheflush"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
    ],
}


def test_load_docker_format_file(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(DOCKER_FILE))
    prof = seccomp.load_profile_file(path, DOCKER_CAPS, "amd64")
    assert prof == {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        ],
    }
    admin = seccomp.load_profile_file(path, ["CAP_SYS_ADMIN"], "amd64")
    assert admin is not None
    assert [r["names"] for r in admin["syscalls"]] == [["read", "write"], ["getpid"], ["mount"]]


def test_load_oci_format_file(tmp_path: Path) -> None:
    oci = {
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "defaultErrnoRet": None,
        "architectures": ["SCMP_ARCH_X86_64"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
                      "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_NE"}]}],
    }
    path = tmp_path / "oci.json"
    path.write_text(json.dumps(oci))
    prof = seccomp.load_profile_file(path, (), "amd64")
    assert prof is not None
    assert prof["flags"] == ["SECCOMP_FILTER_FLAG_LOG"]
    assert prof["architectures"] == ["SCMP_ARCH_X86_64"]
    assert prof["syscalls"] == oci["syscalls"]
    seccomp.validate(prof)


def test_empty_profile_means_unconfined(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text("{}")
    assert seccomp.load_profile_file(path, DOCKER_CAPS, "amd64") is None


def test_profile_file_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        seccomp.load_profile_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidArgument):
        seccomp.load_profile_file(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"defaultAction": "SCMP_ACT_ERRNO",
                                 "syscalls": [{"names": ["read"], "action": "ALLOW"}]}))
    with pytest.raises(InvalidConfig) as info:
        seccomp.load_profile_file(wrong)
    assert info.value.field == f"{wrong}.syscalls[0].action"


@pytest.mark.parametrize("profile, field", [
    ({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
      "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}, "p.archMap"),
    ({"defaultAction": "SCMP_ACT_ERRNO",
      "syscalls": [{"name": "read", "names": ["read"], "action": "SCMP_ACT_ALLOW"}]},
     "p.syscalls[0].name"),
    ({"defaultAction": "SCMP_ACT_ERRNO",
      "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                    "includes": {"minKernel": "4"}}]}, "p.syscalls[0].includes.minKernel"),
    ({"defaultAction": "SCMP_ACT_ERRNO",
      "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                    "excludes": {"caps": "CAP_SYS_ADMIN"}}]}, "p.syscalls[0].excludes.caps"),
    ({"defaultAction": "SCMP_ACT_ERRNO",
      "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["i386"]}]},
     "p.archMap[0].subArchitectures[0]"),
    ({"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}, "p.defaultAction"),
])
def test_docker_profile_errors_name_the_field(profile: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidConfig) as info:
        seccomp.resolve_profile(profile, DOCKER_CAPS, "amd64", field="p")
    assert info.value.field == field


# --- validation of the OCI object -----------------------------------------------------------

def oci(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["close"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        ],
    }
    base.update(over)
    return base


def with_rule(i: int, **fields: Any) -> dict[str, Any]:
    obj = oci()
    obj["syscalls"][i] = {**obj["syscalls"][i], **fields}
    return obj


def test_valid_objects_pass() -> None:
    seccomp.validate(oci())
    seccomp.validate(oci(flags=["SECCOMP_FILTER_FLAG_SPEC_ALLOW"], defaultErrnoRet=38))
    seccomp.validate(oci(defaultAction="SCMP_ACT_ALLOW", syscalls=[]))
    # names this architecture does not have are fine; compile skips them as runc does
    seccomp.validate(with_rule(0, names=["no_such_syscall", "cacheflush"]))
    # unknown keys are ignored, as the runtime spec says
    seccomp.validate(oci(x_vendor={"a": 1}))


@pytest.mark.parametrize("obj, field", [
    (with_rule(3, action="SCMP_ACT_BOGUS"), "linux.seccomp.syscalls[3].action"),
    (with_rule(2, action=None), "linux.seccomp.syscalls[2].action"),
    (with_rule(1, names="write"), "linux.seccomp.syscalls[1].names"),
    (with_rule(1, names=[]), "linux.seccomp.syscalls[1].names"),
    (with_rule(1, names=["write", 3]), "linux.seccomp.syscalls[1].names[1]"),
    (with_rule(1, names=["write", ""]), "linux.seccomp.syscalls[1].names[1]"),
    (with_rule(0, errnoRet=1), "linux.seccomp.syscalls[0].errnoRet"),
    (with_rule(0, action="SCMP_ACT_ERRNO", errnoRet=-1), "linux.seccomp.syscalls[0].errnoRet"),
    (with_rule(0, action="SCMP_ACT_ERRNO", errnoRet=1 << 16),
     "linux.seccomp.syscalls[0].errnoRet"),
    (with_rule(3, args=[{"index": 0, "value": 8, "op": "SCMP_CMP_EQUAL"}]),
     "linux.seccomp.syscalls[3].args[0].op"),
    (with_rule(3, args=[{"index": 6, "value": 8, "op": "SCMP_CMP_EQ"}]),
     "linux.seccomp.syscalls[3].args[0].index"),
    (with_rule(3, args=[{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]),
     "linux.seccomp.syscalls[3].args[0].value"),
    (with_rule(3, args=[{"index": 0, "value": True, "op": "SCMP_CMP_EQ"}]),
     "linux.seccomp.syscalls[3].args[0].value"),
    (with_rule(3, args=[{"index": 0, "value": 1, "valueTwo": 1 << 64, "op": "SCMP_CMP_EQ"}]),
     "linux.seccomp.syscalls[3].args[0].valueTwo"),
    (with_rule(3, args={"index": 0}), "linux.seccomp.syscalls[3].args"),
    (with_rule(3, args=["x"]), "linux.seccomp.syscalls[3].args[0]"),
    (oci(syscalls={"names": ["read"]}), "linux.seccomp.syscalls"),
    (oci(syscalls=["read"]), "linux.seccomp.syscalls[0]"),
    (oci(defaultAction="ALLOW"), "linux.seccomp.defaultAction"),
    (oci(defaultAction=None), "linux.seccomp.defaultAction"),
    (oci(defaultAction="SCMP_ACT_KILL", defaultErrnoRet=1), "linux.seccomp.defaultErrnoRet"),
    (oci(architectures=["SCMP_ARCH_X86_64", "amd64"]), "linux.seccomp.architectures[1]"),
    (oci(architectures="SCMP_ARCH_X86_64"), "linux.seccomp.architectures"),
    (oci(flags=["SECCOMP_FILTER_FLAG_NOPE"]), "linux.seccomp.flags[0]"),
    (oci(listenerMetadata="x"), "linux.seccomp.listenerMetadata"),
])
def test_validation_errors_name_the_field(obj: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidConfig) as info:
        seccomp.validate(obj)
    assert info.value.field == field
    assert field in str(info.value)


def test_validation_field_prefix() -> None:
    with pytest.raises(InvalidConfig) as info:
        seccomp.validate(with_rule(1, action="nope"), field="process.seccomp")
    assert info.value.field == "process.seccomp.syscalls[1].action"
    with pytest.raises(InvalidConfig) as info:
        seccomp.validate(["not", "an", "object"])
    assert info.value.field == "linux.seccomp"


# --- building filters (libseccomp, no kernel load) ------------------------------------------

def test_compile_default_profile_skips_unknown_names() -> None:
    prof = seccomp.default_profile(DOCKER_CAPS)
    with seccomp.compile(prof) as filt:
        # names of other architectures are skipped, not errors
        if prof["architectures"][:1] == ["SCMP_ARCH_X86_64"]:
            assert "riscv_hwprobe" in filt.skipped
        # syscalls newer than Debian 12's libseccomp still get their allow rule
        assert "statmount" not in filt.skipped and "mseal" not in filt.skipped
        assert "read" not in filt.skipped
        prog = filt.program()
    assert prog.instructions > 100
    assert len(prog.bpf) == prog.instructions * 8


def test_compile_unknown_names_are_skipped() -> None:
    with seccomp.compile(with_rule(0, names=["read", "no_such_syscall"])) as filt:
        assert filt.skipped == ("no_such_syscall",)


def test_compile_validates() -> None:
    with pytest.raises(InvalidConfig) as info:
        seccomp.compile(with_rule(2, action="SCMP_ACT_NOPE"))
    assert info.value.field == "linux.seccomp.syscalls[2].action"


def test_notify_is_refused() -> None:
    with pytest.raises(InvalidConfig) as info:
        seccomp.compile(with_rule(1, action="SCMP_ACT_NOTIFY"),)
    assert info.value.field == "linux.seccomp.syscalls[1].action"
    with pytest.raises(InvalidConfig) as info:
        seccomp.compile(oci(defaultAction="SCMP_ACT_NOTIFY"))
    assert info.value.field == "linux.seccomp.defaultAction"


@pytest.mark.parametrize("action", sorted(seccomp.ACTIONS - {"SCMP_ACT_NOTIFY"}))
def test_every_action_compiles(action: str) -> None:
    extra: dict[str, Any] = {"errnoRet": 5} if action in ("SCMP_ACT_ERRNO",
                                                          "SCMP_ACT_TRACE") else {}
    obj = oci(syscalls=[{"names": ["getcwd"], "action": action, **extra}])
    with seccomp.compile(obj) as filt:
        assert filt.program().bpf


def test_rules_equal_to_default_and_repeated_argument_conditions() -> None:
    obj = oci(syscalls=[
        {"names": ["read"], "action": "SCMP_ACT_ERRNO"},  # same as the default: dropped
        {"names": ["dup"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                  {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}]},
        {"names": ["mmap"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 2, "value": 4, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"},
                  {"index": 3, "value": 1, "op": "SCMP_CMP_GE"}]},
    ])
    with seccomp.compile(obj) as filt:
        assert filt.program().bpf


def test_flags() -> None:
    with seccomp.compile(oci()) as filt:  # absent: SPEC_ALLOW, as runc and crun
        assert filt.flags == 4
    with seccomp.compile(oci(flags=[])) as filt:
        assert filt.flags == 0
    with seccomp.compile(oci(flags=["SECCOMP_FILTER_FLAG_LOG",
                                    "SECCOMP_FILTER_FLAG_TSYNC"])) as filt:
        assert filt.flags == 3


def test_wait_killable_recv_needs_new_libseccomp() -> None:
    obj = oci(flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"])
    if seccomp.libseccomp_version() >= (2, 6, 0):
        with seccomp.compile(obj) as filt:
            assert filt.flags == 32
    else:
        with pytest.raises(RuntimeFailure):
            seccomp.compile(obj)


def test_program_is_generated_once_per_distinct_object() -> None:
    a = seccomp.program(seccomp.default_profile(DOCKER_CAPS))
    b = seccomp.program(seccomp.default_profile(DOCKER_CAPS))
    c = seccomp.program(seccomp.default_profile([*DOCKER_CAPS, "CAP_SYS_ADMIN"]))
    assert a is b and a is not c and a.bpf != c.bpf


def test_released_filter_cannot_load() -> None:
    filt = seccomp.compile(oci())
    filt.release()
    filt.release()
    with pytest.raises(RuntimeFailure):
        filt.load()


def test_import_does_no_work() -> None:
    import subprocess
    import sys

    code = ("import sys, berth.runtime.seccomp as s; "
            "print(s._lib.cache_info().currsize, s._packaged_default.cache_info().currsize)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(Path(seccomp.__file__).parents[2])})
    assert out.stdout.split() == ["0", "0"]


@pytest.mark.parametrize("release, version", [
    ("6.18.3-amd64", (6, 18)), ("3.12-1-amd64", (3, 12)), ("4.8", (4, 8)),
    ("5.10.0-rc5", (5, 10)), ("6.1+deb12", (6, 1)),
])
def test_kernel_versions(release: str, version: tuple[int, int]) -> None:
    assert seccomp._parse_kernel(release) == version


def test_host_arch_by_default() -> None:
    prof = seccomp.default_profile(DOCKER_CAPS)
    if os.uname().machine == "x86_64":
        assert prof["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
