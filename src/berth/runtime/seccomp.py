"""Seccomp: profiles in, kernel filters out.

This module owns four steps, each usable on its own:

1. Profiles (pure). Docker-format profiles, with `archMap` and rules that apply only for some
   capabilities, architectures or kernels, are resolved into the OCI `linux.seccomp` object,
   exactly as dockerd does when it writes a container's config.json. The packaged
   `profiles/default.json` is docker's default profile. `default_profile`, `resolve_profile`,
   `load_profile_file`.
2. Validation (pure). `validate` checks an OCI `linux.seccomp` object and names the first bad
   field (`linux.seccomp.syscalls[3].action`). Syscall names are not checked here: a name this
   architecture (or libseccomp) does not know is skipped when compiling, as runc does.
3. Filters (ctypes over libseccomp.so.2). `compile` builds a libseccomp filter context from an
   OCI object; `Filter.load` installs it in the calling process with seccomp_load. libseccomp
   is never told to set no_new_privs: the runtime does that itself from
   `process.noNewPrivileges`, and must have done it (or hold CAP_SYS_ADMIN) before loading.
4. Programs. Generating BPF is most of the cost (about 10 ms for x86_64 with its x86 and x32
   sub-architectures), so `program` generates it once per distinct `linux.seccomp` object
   in the parent, and `Program.load` in the container's init is a single seccomp(2) call.

Raises: InvalidConfig for a malformed profile or field; NotFound for a missing profile file;
InvalidArgument for a profile file that is not JSON; RuntimeFailure when libseccomp or the
kernel refuses.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeGuard

from berth.errors import InvalidArgument, InvalidConfig, NotFound, RuntimeFailure

__all__ = [
    "ACTIONS",
    "ARCHES",
    "FLAGS",
    "OPERATORS",
    "Filter",
    "Program",
    "compile",
    "default_profile",
    "libseccomp_version",
    "load_profile_file",
    "program",
    "resolve_profile",
    "validate",
]

# --- names from libseccomp's seccomp.h, as the runtime spec spells them ---------------------

ACTIONS = frozenset({
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
})
# Actions whose filter return value carries a number (errnoRet / defaultErrnoRet).
_ACTIONS_WITH_ERRNO = frozenset({"SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"})

ARCHES = frozenset({
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K",
    "SCMP_ARCH_SH", "SCMP_ARCH_SHEB",
})

# Values of enum scmp_compare.
OPERATORS: Mapping[str, int] = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}

FLAGS = frozenset({
    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
})

_EPERM = 1
_U64 = (1 << 64) - 1
_RET_DATA = 0xFFFF  # SECCOMP_RET_DATA: what an ERRNO/TRACE action can carry

# Keys of the OCI object that a docker-format profile passes through unchanged.
_OCI_PASSTHROUGH = ("defaultErrnoRet", "flags", "listenerPath", "listenerMetadata")

# Host architecture names. Docker's profile conditions (`includes.arches`) use its own names
# ("amd64", "arm64", ...); uname and the OCI spec use others. Each alias maps to
# (docker's name, the SCMP_ARCH_* that names the same ABI).
_ARCH_ALIASES: Mapping[str, tuple[str, str]] = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"), "amd64": ("amd64", "SCMP_ARCH_X86_64"),
    "i386": ("x86", "SCMP_ARCH_X86"), "i486": ("x86", "SCMP_ARCH_X86"),
    "i586": ("x86", "SCMP_ARCH_X86"), "i686": ("x86", "SCMP_ARCH_X86"),
    "x86": ("x86", "SCMP_ARCH_X86"), "386": ("x86", "SCMP_ARCH_X86"),
    "x32": ("x32", "SCMP_ARCH_X32"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"), "arm64": ("arm64", "SCMP_ARCH_AARCH64"),
    "arm": ("arm", "SCMP_ARCH_ARM"), "armv6l": ("arm", "SCMP_ARCH_ARM"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"), "armv8l": ("arm", "SCMP_ARCH_ARM"),
    "ppc": ("ppc", "SCMP_ARCH_PPC"), "ppc64": ("ppc64", "SCMP_ARCH_PPC64"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390": ("s390", "SCMP_ARCH_S390"), "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
    # dockerd's own tables disagree on this name ("loongarch64" vs "loong64"), so it finds no
    # archMap entry there; the ABI is unambiguous, so both names resolve to it here.
    "loongarch64": ("loongarch64", "SCMP_ARCH_LOONGARCH64"),
    "loong64": ("loongarch64", "SCMP_ARCH_LOONGARCH64"),
    "mips": ("mips", "SCMP_ARCH_MIPS"), "mipsel": ("mipsel", "SCMP_ARCH_MIPSEL"),
    "mips64": ("mips64", "SCMP_ARCH_MIPS64"), "mipsel64": ("mipsel64", "SCMP_ARCH_MIPSEL64"),
    "mips64n32": ("mips64n32", "SCMP_ARCH_MIPS64N32"),
    "mipsel64n32": ("mipsel64n32", "SCMP_ARCH_MIPSEL64N32"),
}
_ARCH_BY_SCMP: Mapping[str, tuple[str, str]] = {scmp: (n, scmp) for n, scmp in
                                                _ARCH_ALIASES.values()}


# --- 1. profiles --------------------------------------------------------------------------

def default_profile(
    capabilities: Iterable[str],
    arch: str | None = None,
    *,
    kernel: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Docker's default profile as an OCI `linux.seccomp` object.

    `capabilities` is the container's bounding set ("CAP_SYS_ADMIN" or "sys_admin"); rules
    that docker grants with a capability are kept only when it is present. `arch` is the host
    architecture in uname, docker or SCMP_ARCH spelling (default: this machine's); `kernel`
    is (major, minor) for `minKernel` conditions (default: the running kernel).
    """
    resolved = resolve_profile(_packaged_default(), capabilities, arch, kernel=kernel,
                               field="profiles/default.json", checked=True)
    assert resolved is not None  # the packaged profile has a default action
    return resolved


def resolve_profile(
    profile: Mapping[str, Any],
    capabilities: Iterable[str],
    arch: str | None = None,
    *,
    kernel: tuple[int, int] | None = None,
    field: str = "seccomp profile",
    checked: bool = False,
) -> dict[str, Any] | None:
    """Resolve a docker-format (or plain OCI) profile into an OCI `linux.seccomp` object.

    Follows dockerd: `archMap` becomes the host's architecture and sub-architectures; a rule
    is kept when every `includes` condition holds and no `excludes` condition does (caps are
    tested against `capabilities`, arches against the host's docker name, minKernel against
    `kernel`); `name` becomes `names`; `comment`, `includes`, `excludes` are dropped. Returns
    None for a profile with neither a default action nor rules, which docker reads as
    "unconfined". `checked=True` skips validation of a profile already validated.
    """
    if not checked:
        _check_docker_profile(profile, field)
    if not profile.get("defaultAction") and not profile.get("syscalls"):
        return None
    host_name, host_scmp = _host_arch(arch)
    caps = {_cap_name(c) for c in capabilities}
    kver = kernel if kernel is not None else _running_kernel()

    out: dict[str, Any] = {"defaultAction": profile.get("defaultAction", "")}
    for key in _OCI_PASSTHROUGH:
        value = profile.get(key)
        if value is not None:  # docker drops nulls (omitempty)
            out[key] = list(value) if isinstance(value, list) else value
    arches: list[str] = list(profile.get("architectures") or ())
    for entry in profile.get("archMap") or ():
        if entry["architecture"] == host_scmp:
            arches = [host_scmp, *(entry.get("subArchitectures") or ())]
            break
    out["architectures"] = arches

    syscalls: list[dict[str, Any]] = []
    for rule in profile.get("syscalls") or ():
        if not _rule_applies(rule, caps, host_name, kver):
            continue
        names = [rule["name"]] if rule.get("name") else list(rule.get("names") or ())
        oci: dict[str, Any] = {"names": names, "action": rule["action"]}
        if rule.get("errnoRet") is not None:
            oci["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            oci["args"] = [dict(a) for a in rule["args"]]
        syscalls.append(oci)
    out["syscalls"] = syscalls
    return out


def load_profile_file(
    path: str | os.PathLike[str],
    capabilities: Iterable[str] = (),
    arch: str | None = None,
    *,
    kernel: tuple[int, int] | None = None,
) -> dict[str, Any] | None:
    """Read a profile file as `--security-opt seccomp=FILE` does and resolve it.

    Docker-format and OCI-format files are both accepted: an OCI object is a docker profile
    without conditions. Returns None when the file asks for no filter (see resolve_profile).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"seccomp profile {p}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"seccomp profile {p}: cannot read: {e}") from e
    try:
        profile = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"seccomp profile {p}: not JSON: {e}") from e
    return resolve_profile(profile, capabilities, arch, kernel=kernel, field=str(p))


@functools.cache
def _packaged_default() -> Mapping[str, Any]:
    # Parsed and checked once per process; resolve_profile copies what it returns.
    text = resources.files("berth.runtime").joinpath("profiles/default.json").read_text("utf-8")
    profile = json.loads(text)
    _check_docker_profile(profile, "profiles/default.json")
    return profile  # type: ignore[no-any-return]


def _rule_applies(rule: Mapping[str, Any], caps: set[str], arch: str,
                  kernel: tuple[int, int]) -> bool:
    exc = rule.get("excludes") or {}
    if arch in (exc.get("arches") or ()):
        return False
    if any(_cap_name(c) in caps for c in exc.get("caps") or ()):
        return False
    if exc.get("minKernel") and kernel >= _parse_kernel(exc["minKernel"]):
        return False
    inc = rule.get("includes") or {}
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if any(_cap_name(c) not in caps for c in inc.get("caps") or ()):
        return False
    if inc.get("minKernel") and kernel < _parse_kernel(inc["minKernel"]):
        return False
    return True


def _cap_name(name: str) -> str:
    up = name.upper()
    return up if up.startswith("CAP_") else "CAP_" + up


def _host_arch(arch: str | None) -> tuple[str, str]:
    """(docker's name, SCMP_ARCH_*) of `arch`, or of this machine."""
    if arch is None:
        machine = os.uname().machine
        # uname says "mips"/"mips64" for either byte order.
        if machine.startswith("mips") and sys.byteorder == "little":
            machine = machine.replace("mips", "mipsel", 1)
        arch = machine
    found = _ARCH_ALIASES.get(arch.lower()) or _ARCH_BY_SCMP.get(arch.upper())
    if found is None:
        raise InvalidArgument(f"seccomp: unknown architecture {arch!r}")
    return found


def _parse_kernel(text: str) -> tuple[int, int]:
    """(kernel, major) of "6.18.3-amd64" or "4.8"; what follows the major is ignored."""
    major, _, rest = text.partition(".")
    end = 0
    while end < len(rest) and rest[end].isdigit():
        end += 1
    return int(major), int(rest[:end] or 0)


@functools.cache
def _running_kernel() -> tuple[int, int]:
    return _parse_kernel(os.uname().release)


# --- 2. validation ------------------------------------------------------------------------

def validate(seccomp: Any, field: str = "linux.seccomp") -> None:
    """Check an OCI `linux.seccomp` object; raise InvalidConfig naming the first bad field.

    Unknown keys are ignored, as the runtime spec requires. Syscall names are only checked to
    be non-empty strings: whether this architecture has them is decided when compiling.
    """
    obj = _need_obj(seccomp, field)
    _check_action(obj.get("defaultAction"), f"{field}.defaultAction")
    _check_errno_ret(obj, "defaultErrnoRet", obj["defaultAction"], field)
    arches = obj.get("architectures")
    if arches is not None:
        for i, a in enumerate(_need_list(arches, f"{field}.architectures")):
            _check_arch(a, f"{field}.architectures[{i}]")
    flags = obj.get("flags")
    if flags is not None:
        for i, fl in enumerate(_need_list(flags, f"{field}.flags")):
            if fl not in FLAGS:
                raise InvalidConfig(f"{field}.flags[{i}]", f"unknown seccomp flag {fl!r}")
    for key in ("listenerPath", "listenerMetadata"):
        if key in obj and not isinstance(obj[key], str):
            raise InvalidConfig(f"{field}.{key}", "must be a string")
    if obj.get("listenerMetadata") and not obj.get("listenerPath"):
        raise InvalidConfig(f"{field}.listenerMetadata", "set without listenerPath")
    syscalls = obj.get("syscalls")
    if syscalls is not None:
        for i, rule in enumerate(_need_list(syscalls, f"{field}.syscalls")):
            _check_rule(rule, f"{field}.syscalls[{i}]", docker=False)


def _check_docker_profile(profile: Any, field: str) -> None:
    """Validate a docker-format profile before resolution, so errors name the file's own
    indices (resolution drops rules and would shift them)."""
    obj = _need_obj(profile, field)
    if obj.get("defaultAction") or obj.get("syscalls"):
        _check_action(obj.get("defaultAction"), f"{field}.defaultAction")
        _check_errno_ret(obj, "defaultErrnoRet", obj["defaultAction"], field)
    if obj.get("architectures") and obj.get("archMap"):
        raise InvalidConfig(f"{field}.archMap",
                            "both 'architectures' and 'archMap' are set; use one of them")
    for i, a in enumerate(_need_list(obj.get("architectures") or [], f"{field}.architectures")):
        _check_arch(a, f"{field}.architectures[{i}]")
    for i, entry in enumerate(_need_list(obj.get("archMap") or [], f"{field}.archMap")):
        ef = f"{field}.archMap[{i}]"
        _check_arch(_need_obj(entry, ef).get("architecture"), f"{ef}.architecture")
        subs = entry.get("subArchitectures") or []
        for j, sub in enumerate(_need_list(subs, f"{ef}.subArchitectures")):
            _check_arch(sub, f"{ef}.subArchitectures[{j}]")
    for i, fl in enumerate(_need_list(obj.get("flags") or [], f"{field}.flags")):
        if fl not in FLAGS:
            raise InvalidConfig(f"{field}.flags[{i}]", f"unknown seccomp flag {fl!r}")
    for i, rule in enumerate(_need_list(obj.get("syscalls") or [], f"{field}.syscalls")):
        _check_rule(rule, f"{field}.syscalls[{i}]", docker=True)


def _check_rule(rule: Any, field: str, *, docker: bool) -> None:
    obj = _need_obj(rule, field)
    if docker and obj.get("name"):
        if obj.get("names"):
            raise InvalidConfig(f"{field}.name",
                                "both 'name' and 'names' are set; use 'names'")
        if not isinstance(obj["name"], str):
            raise InvalidConfig(f"{field}.name", "must be a string")
    else:
        names = _need_list(obj.get("names"), f"{field}.names")
        if not names:
            raise InvalidConfig(f"{field}.names", "must name at least one syscall")
        for j, name in enumerate(names):
            if not isinstance(name, str) or not name:
                raise InvalidConfig(f"{field}.names[{j}]", "must be a non-empty string")
    _check_action(obj.get("action"), f"{field}.action")
    _check_errno_ret(obj, "errnoRet", obj["action"], field)
    args = obj.get("args")
    if args is not None:
        for j, arg in enumerate(_need_list(args, f"{field}.args")):
            _check_arg(arg, f"{field}.args[{j}]")
    if docker:
        for key in ("includes", "excludes"):
            if obj.get(key) is not None:
                _check_condition(obj[key], f"{field}.{key}")
        if "comment" in obj and not isinstance(obj["comment"], str):
            raise InvalidConfig(f"{field}.comment", "must be a string")


def _check_arg(arg: Any, field: str) -> None:
    obj = _need_obj(arg, field)
    index = obj.get("index")
    if not _is_uint(index) or index > 5:
        raise InvalidConfig(f"{field}.index", f"must be an argument index 0..5, not {index!r}")
    for key, required in (("value", True), ("valueTwo", False)):
        if key not in obj and not required:
            continue
        v = obj.get(key)
        if not _is_uint(v) or v > _U64:
            raise InvalidConfig(f"{field}.{key}", f"must be an unsigned 64-bit integer, not {v!r}")
    op = obj.get("op")
    if op not in OPERATORS:
        raise InvalidConfig(f"{field}.op", f"unknown operator {op!r}; expected one of "
                                           + ", ".join(sorted(OPERATORS)))


def _check_condition(cond: Any, field: str) -> None:
    obj = _need_obj(cond, field)
    for key in ("caps", "arches"):
        for i, v in enumerate(_need_list(obj.get(key) or [], f"{field}.{key}")):
            if not isinstance(v, str) or not v:
                raise InvalidConfig(f"{field}.{key}[{i}]", "must be a non-empty string")
    mk = obj.get("minKernel")
    if mk:
        parts = mk.split(".") if isinstance(mk, str) else []
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or parts == ["0", "0"]:
            raise InvalidConfig(f"{field}.minKernel",
                                f'must be "<kernel>.<major>" like "4.8", not {mk!r}')


def _check_action(action: Any, field: str) -> None:
    if action not in ACTIONS:
        if action is None:
            raise InvalidConfig(field, "missing")
        raise InvalidConfig(field, f"unknown seccomp action {action!r}")


def _check_errno_ret(obj: Mapping[str, Any], key: str, action: str, field: str) -> None:
    if key not in obj or obj[key] is None:
        return
    value = obj[key]
    if action not in _ACTIONS_WITH_ERRNO:
        raise InvalidConfig(f"{field}.{key}", f"{action} does not return an errno")
    if not _is_uint(value) or value > _RET_DATA:
        raise InvalidConfig(f"{field}.{key}", f"must be an integer 0..{_RET_DATA}, not {value!r}")


def _check_arch(arch: Any, field: str) -> None:
    if arch not in ARCHES:
        raise InvalidConfig(field, f"unknown seccomp architecture {arch!r}")


def _need_obj(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidConfig(field, f"must be an object, not {type(value).__name__}")
    return value


def _need_list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidConfig(field, f"must be a list, not {type(value).__name__}")
    return value


def _is_uint(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# --- 3. libseccomp ------------------------------------------------------------------------

# Actions (seccomp.h). ERRNO and TRACE carry 16 bits of data.
_ACT_KILL_PROCESS = 0x80000000
_ACT_KILL_THREAD = 0x00000000
_ACT_TRAP = 0x00030000
_ACT_ERRNO = 0x00050000
_ACT_TRACE = 0x7FF00000
_ACT_LOG = 0x7FFC0000
_ACT_ALLOW = 0x7FFF0000

# enum scmp_filter_attr
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_CTL_OPTIMIZE = 8
_ATTR_API_SYSRAWRC = 9
_ATTR_CTL_WAITKILL = 10  # libseccomp >= 2.6

_FLAG_ATTRS: Mapping[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": _ATTR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": _ATTR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _ATTR_CTL_SSB,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": _ATTR_CTL_WAITKILL,
}

_NR_SCMP_ERROR = -1

# seccomp(2): operation and the SECCOMP_FILTER_FLAG_* bits (linux/seccomp.h).
_SECCOMP_SET_MODE_FILTER = 1
_FLAG_BITS: Mapping[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32,
}
_SOCK_FILTER_SIZE = 8  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k

# Syscalls newer than some libseccomp releases (Debian 12 ships 2.5.4). Since Linux 5.1 new
# syscalls take the same number on every architecture except alpha, mips and ia64 (whose
# tables are offset), so one number serves all the ABIs this filter may hold; on mips the rule
# lands on an unused number and has no effect. Numbers from the kernel's scripts/syscall.tbl.
# Without this, the default profile's allow-list entries for these calls would be skipped and
# they would fail with EPERM on a kernel that has them.
_GENERIC_SYSCALLS: Mapping[str, int] = {
    "statmount": 457, "listmount": 458, "lsm_get_self_attr": 459, "lsm_set_self_attr": 460,
    "lsm_list_modules": 461, "mseal": 462, "setxattrat": 463, "getxattrat": 464,
    "listxattrat": 465, "removexattrat": 466,
}
# Above this many syscalls, ask libseccomp for a binary search tree instead of a linear list of
# syscall checks, as runc does (libseccomp <= 2.5.4 misbehaves with a tree and no rules).
_TREE_MIN_RULES = 32


class _ArgCmp(ctypes.Structure):
    # struct scmp_arg_cmp
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


class _SockFprog(ctypes.Structure):
    # struct sock_fprog
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


@functools.cache
def _lib() -> ctypes.CDLL:
    """Load libseccomp once, on first use, and declare the functions used."""
    candidates = ["libseccomp.so.2"]
    found = ctypes.util.find_library("seccomp")
    if found and found not in candidates:
        candidates.append(found)
    lib: ctypes.CDLL | None = None
    errors: list[str] = []
    for name in candidates:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError as e:
            errors.append(str(e))
    if lib is None:
        raise RuntimeFailure("seccomp: cannot load libseccomp (install libseccomp2): "
                             + "; ".join(errors))
    vp, u32, c_int, c_uint = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint
    sigs: dict[str, tuple[Any, list[Any]]] = {
        "seccomp_init": (vp, [u32]),
        "seccomp_release": (None, [vp]),
        "seccomp_load": (c_int, [vp]),
        "seccomp_attr_set": (c_int, [vp, c_int, u32]),
        "seccomp_arch_add": (c_int, [vp, u32]),
        "seccomp_arch_resolve_name": (u32, [ctypes.c_char_p]),
        "seccomp_syscall_resolve_name": (c_int, [ctypes.c_char_p]),
        "seccomp_rule_add_array": (c_int, [vp, u32, c_int, c_uint, ctypes.POINTER(_ArgCmp)]),
        "seccomp_export_bpf": (c_int, [vp, c_int]),
        "seccomp_version": (ctypes.POINTER(_Version), []),
    }
    for fname, (restype, argtypes) in sigs.items():
        fn = getattr(lib, fname)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


def libseccomp_version() -> tuple[int, int, int]:
    """(major, minor, micro) of the libseccomp in use."""
    v = _lib().seccomp_version().contents
    return v.major, v.minor, v.micro


@functools.cache
def _syscall_number(name: str) -> tuple[int, bool]:
    """(number on the native ABI or __NR_SCMP_ERROR, whether only the native ABI can use it).

    Cached per process: a resident process resolves each name once, not per container.
    """
    nr = int(_lib().seccomp_syscall_resolve_name(name.encode()))
    if nr == _NR_SCMP_ERROR and name in _GENERIC_SYSCALLS:
        return _GENERIC_SYSCALLS[name], True
    return nr, False


class Filter:
    """A libseccomp filter context built by `compile`; owned until `release`.

    `skipped` lists the syscall names left out because neither libseccomp nor this module
    knows them on this architecture (runc skips them the same way). `flags` are the
    SECCOMP_FILTER_FLAG_* bits the kernel will be given on load.
    """

    __slots__ = ("_ctx", "skipped", "flags")

    def __init__(self, ctx: int) -> None:
        self._ctx: int | None = ctx
        self.skipped: tuple[str, ...] = ()
        self.flags = 0

    def load(self) -> None:
        """Install the filter in the calling thread (every thread with TSYNC), via
        seccomp_load. The caller must have set no_new_privs or hold CAP_SYS_ADMIN."""
        rc = _lib().seccomp_load(self._live())
        if rc < 0:
            raise RuntimeFailure(f"seccomp: loading the filter: {_load_error(-rc)}")

    def program(self) -> Program:
        """Generate the BPF program now, so that loading it later is one system call."""
        fd = os.memfd_create("berth-seccomp", os.MFD_CLOEXEC)
        try:
            rc = _lib().seccomp_export_bpf(self._live(), fd)
            if rc < 0:
                raise RuntimeFailure(f"seccomp: generating the filter: {os.strerror(-rc)}")
            size = os.lseek(fd, 0, os.SEEK_CUR)
            bpf = os.pread(fd, size, 0)
        finally:
            os.close(fd)
        _seccomp_syscall()  # resolve now, so that Program.load needs nothing from libseccomp
        return Program(bpf, self.flags, self.skipped)

    def release(self) -> None:
        """Free the libseccomp context. Safe to call twice."""
        if self._ctx is not None:
            _lib().seccomp_release(self._ctx)
            self._ctx = None

    def __enter__(self) -> Filter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # interpreter shutdown: libseccomp's binding may be gone already
            pass

    def _live(self) -> int:
        if self._ctx is None:
            raise RuntimeFailure("seccomp: the filter was already released")
        return self._ctx


@dataclass(frozen=True, slots=True)
class Program:
    """A generated seccomp BPF program (struct sock_filter[]) and its load flags.

    What libseccomp would install, minus the work of generating it: `load` is a single
    seccomp(2) call, so a resident process can prepare a program once and every container it
    starts pays only for the system call.
    """

    bpf: bytes
    flags: int
    skipped: tuple[str, ...] = ()

    @property
    def instructions(self) -> int:
        return len(self.bpf) // _SOCK_FILTER_SIZE

    def load(self) -> None:
        """Install the program in the calling thread (every thread with TSYNC). The caller
        must have set no_new_privs or hold CAP_SYS_ADMIN."""
        load_bpf(self.bpf, self.flags)


def load_bpf(bpf: bytes, flags: int) -> None:
    """Install a BPF program (what Program holds) with one seccomp(2) call; the runtime's
    cached programs come here without the rest of this module (see process.Bpf)."""
    from berth.runtime import _sys
    try:
        rc = _sys.seccomp_set_filter(bpf, flags)
    except OSError as e:
        raise RuntimeFailure(f"seccomp: loading the filter: {_load_error(e.errno or 0)}") from e
    if rc > 0:  # TSYNC: the id of a thread that could not be synchronised
        raise RuntimeFailure(f"seccomp: thread {rc} cannot take the filter (TSYNC)")


def compile(seccomp: Mapping[str, Any], *, field: str = "linux.seccomp",
            checked: bool = False) -> Filter:
    """Build a libseccomp filter from an OCI `linux.seccomp` object (not yet loaded).

    Follows runc: `flags` absent means SECCOMP_FILTER_FLAG_SPEC_ALLOW where supported; rules
    whose action equals the default are dropped; a rule with two conditions on the same
    argument becomes one rule per condition (libseccomp cannot AND them). `checked=True`
    skips `validate` for an object already validated.
    """
    if not checked:
        validate(seccomp, field)
    lib = _lib()
    default = _action_value(seccomp["defaultAction"], seccomp.get("defaultErrnoRet"),
                            f"{field}.defaultAction")
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise RuntimeFailure("seccomp: seccomp_init failed")
    filt = Filter(ctx)
    try:
        _fill(filt, lib, ctx, seccomp, default, field)
    except BaseException:
        filt.release()
        raise
    return filt


def program(seccomp: Mapping[str, Any], *, field: str = "linux.seccomp") -> Program:
    """The BPF program for an OCI `linux.seccomp` object, generated once per distinct object.

    Equal objects (the default profile for the same capabilities, say) share one program for
    the life of the process; generating the default profile for x86_64 with its x86 and x32
    sub-architectures takes milliseconds, loading a program takes microseconds.
    """
    try:
        key = json.dumps(seccomp, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        validate(seccomp, field)  # names the field that is not plain JSON data
        raise
    return _program_for(key, field)


@functools.lru_cache(maxsize=32)
def _program_for(key: str, field: str) -> Program:
    with compile(json.loads(key), field=field) as filt:
        return filt.program()


def _fill(filt: Filter, lib: ctypes.CDLL, ctx: int, seccomp: Mapping[str, Any], default: int,
          field: str) -> None:
    def attr(which: int, value: int, what: str) -> None:
        rc = lib.seccomp_attr_set(ctx, which, value)
        if rc < 0:
            major, minor, micro = libseccomp_version()
            raise RuntimeFailure(f"seccomp: {what}: not supported by libseccomp "
                                 f"{major}.{minor}.{micro} or this kernel ({os.strerror(-rc)})")

    # The runtime sets no_new_privs itself, from process.noNewPrivileges.
    attr(_ATTR_CTL_NNP, 0, "leaving no_new_privs to the runtime")
    # Report the kernel's errno from seccomp_load instead of a generic ECANCELED.
    lib.seccomp_attr_set(ctx, _ATTR_API_SYSRAWRC, 1)

    flags = seccomp.get("flags")
    if flags is None:
        # As runc and crun: without explicit flags, do not force the speculative store bypass
        # mitigation on the container (the process can still opt in with prctl).
        if lib.seccomp_attr_set(ctx, _ATTR_CTL_SSB, 1) == 0:
            filt.flags |= _FLAG_BITS["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
    else:
        for i, flag in enumerate(flags):
            attr(_FLAG_ATTRS[flag], 1, f"{field}.flags[{i}] {flag}")
            filt.flags |= _FLAG_BITS[flag]

    rules = seccomp.get("syscalls") or ()
    if sum(len(rule["names"]) for rule in rules) > _TREE_MIN_RULES:
        lib.seccomp_attr_set(ctx, _ATTR_CTL_OPTIMIZE, 2)  # best effort, as in runc

    # Plan every rule first: (rule field, name, action, number, conditions, native only).
    planned: list[tuple[str, str, int, int, list[tuple[int, Any]], bool]] = []
    skipped: list[str] = []
    for i, rule in enumerate(rules):
        rf = f"{field}.syscalls[{i}]"
        action = _action_value(rule["action"], rule.get("errnoRet"), f"{rf}.action")
        if action == default:
            continue  # libseccomp refuses a rule that repeats the default; it changes nothing
        conds = _conditions(rule.get("args") or ())
        for name in rule["names"]:
            nr, native_only = _syscall_number(name)
            if nr == _NR_SCMP_ERROR:
                skipped.append(name)
            else:
                planned.append((rf, name, action, nr, conds, native_only))

    def add_rules(native_only: bool) -> None:
        for rf, name, action, nr, conds, only in planned:
            if only is not native_only:
                continue
            for count, array in conds:
                rc = lib.seccomp_rule_add_array(ctx, action, nr, count, array)
                if rc < 0:
                    raise RuntimeFailure(f"seccomp: {rf}: adding a rule for {name}: "
                                         f"{os.strerror(-rc)}")

    # Rules by raw number go in while the native architecture is the only one: libseccomp
    # cannot translate a number it has no name for to another ABI (EFAULT), and a rule added
    # now is not copied into architectures added later.
    add_rules(native_only=True)
    for i, arch in enumerate(seccomp.get("architectures") or ()):
        token = lib.seccomp_arch_resolve_name(arch[len("SCMP_ARCH_"):].lower().encode())
        if token == 0:
            raise RuntimeFailure(f"seccomp: {field}.architectures[{i}] {arch}: unknown to "
                                 "this libseccomp")
        rc = lib.seccomp_arch_add(ctx, token)
        if rc < 0 and rc != -errno.EEXIST:  # the native architecture is always there
            raise RuntimeFailure(f"seccomp: adding {arch}: {os.strerror(-rc)}")
    add_rules(native_only=False)
    filt.skipped = tuple(skipped)


def _action_value(action: str, errno_ret: int | None, field: str) -> int:
    if action in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return _ACT_KILL_THREAD
    if action == "SCMP_ACT_KILL_PROCESS":
        return _ACT_KILL_PROCESS
    if action == "SCMP_ACT_TRAP":
        return _ACT_TRAP
    if action == "SCMP_ACT_ALLOW":
        return _ACT_ALLOW
    if action == "SCMP_ACT_LOG":
        return _ACT_LOG
    if action == "SCMP_ACT_ERRNO":
        return _ACT_ERRNO | ((_EPERM if errno_ret is None else errno_ret) & _RET_DATA)
    if action == "SCMP_ACT_TRACE":
        return _ACT_TRACE | ((_EPERM if errno_ret is None else errno_ret) & _RET_DATA)
    if action == "SCMP_ACT_NOTIFY":
        raise InvalidConfig(field, "SCMP_ACT_NOTIFY (a seccomp agent) is not supported by berth")
    raise InvalidConfig(field, f"unknown seccomp action {action!r}")


def _conditions(args: Iterable[Mapping[str, Any]]) -> list[tuple[int, Any]]:
    """(count, struct scmp_arg_cmp[]) to pass, one pair per rule to add."""
    cmps = [_ArgCmp(a["index"], OPERATORS[a["op"]], a["value"], a.get("valueTwo", 0))
            for a in args]
    if not cmps:
        return [(0, None)]
    indices = [c.arg for c in cmps]
    if len(set(indices)) == len(indices):
        return [(len(cmps), (_ArgCmp * len(cmps))(*cmps))]
    # Two conditions on one argument: libseccomp rejects that in one rule, so each condition
    # becomes its own rule (an OR), which is what runc does and what profiles rely on.
    return [(1, (_ArgCmp * 1)(c)) for c in cmps]


def _load_error(err: int) -> str:
    text = os.strerror(err)
    if err == errno.EACCES:
        text += " (set no_new_privs or hold CAP_SYS_ADMIN first)"
    return text


@functools.cache
def _seccomp_syscall() -> int:
    nr, _ = _syscall_number("seccomp")
    if nr < 0:
        raise RuntimeFailure("seccomp: no seccomp system call on this architecture")
    return nr


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc
