"""Capability names <-> numbers, and applying the five OCI capability sets to this process.

The order of work matters and is the one the kernel imposes: drop the bounding set while we
still hold CAP_SETPCAP, keep permitted capabilities across setuid (PR_SET_KEEPCAPS), then set
effective/permitted/inheritable with capset, then raise the ambient set (which needs the cap in
both permitted and inheritable).
"""

from __future__ import annotations

from berth.errors import InvalidConfig, ResourceLimit
from berth.runtime import _sys

NAMES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
NUMBERS = {name: i for i, name in enumerate(NAMES)}

# Docker's default set for containers (moby oci/caps/defaults.go).
DOCKER_DEFAULT = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(NAMES) - 1


def mask(names: tuple[str, ...] | list[str], field: str) -> int:
    """Names -> bit mask. Unknown names are a config error; names the kernel lacks are skipped
    (as runc does, with the same effect: the capability cannot be granted)."""
    top = last_cap()
    out = 0
    for i, name in enumerate(names):
        num = NUMBERS.get(name.upper() if name.upper().startswith("CAP_") else "CAP_" + name.upper())
        if num is None:
            raise InvalidConfig(f"{field}[{i}]", f"unknown capability {name!r}")
        if num <= top:
            out |= 1 << num
    return out


def names_of(bits: int) -> list[str]:
    return [n for i, n in enumerate(NAMES) if bits >> i & 1]


def host_bounding() -> int:
    """The bounding set of this process: what any container here can be given at most."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    return (1 << (last_cap() + 1)) - 1


class CapSets:
    """The five sets as masks, checked once before the container process exists."""

    __slots__ = ("bounding", "effective", "permitted", "inheritable", "ambient")

    def __init__(self, caps: object, field: str = "process.capabilities") -> None:
        get = (lambda k: getattr(caps, k)) if caps is not None else (lambda k: ())
        for k in self.__slots__:
            setattr(self, k, mask(get(k), f"{field}.{k}"))

    def apply_bounding(self) -> None:
        """Drop from the bounding set everything not listed. Needs CAP_SETPCAP."""
        for cap in range(last_cap() + 1):
            if not self.bounding >> cap & 1:
                try:
                    _sys.prctl(_sys.PR_CAPBSET_DROP, cap)
                except OSError as e:
                    if e.errno != 22:  # EINVAL: not a capability this kernel knows
                        raise

    def apply_sets(self) -> None:
        """Set effective, permitted, inheritable, then ambient (after any setuid)."""
        try:
            _sys.capset(self.effective, self.permitted, self.inheritable)
        except OSError as e:
            raise ResourceLimit(
                f"cannot set capabilities {names_of(self.permitted & ~host_bounding())}: {e}"
            ) from e
        _sys.prctl(_sys.PR_CAP_AMBIENT, _sys.PR_CAP_AMBIENT_CLEAR_ALL)
        for cap in range(last_cap() + 1):
            if self.ambient >> cap & 1 and self.permitted >> cap & 1 and self.inheritable >> cap & 1:
                _sys.prctl(_sys.PR_CAP_AMBIENT, _sys.PR_CAP_AMBIENT_RAISE, cap)
