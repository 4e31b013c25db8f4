"""Device access rules: an emulator of the cgroup v1 devices controller, and the rules to write.

The OCI list is ordered, later entries win. The v1 kernel interface is not a list: the cgroup
has a default (allow all or deny all) and a set of exceptions, and `devices.allow` /
`devices.deny` add or remove exceptions depending on that default. So the list is first played
on an emulator (what the kernel will hold at the end), then the emulator's state is turned into
the writes that bring the cgroup from its current state to that one: the same approach as
runc's devices emulator, written from the kernel's documented semantics.

Everything here is pure; `manager` reads `devices.list` and performs the writes.
"""

from __future__ import annotations

from berth.errors import InvalidConfig

from .resources import WILDCARD, DeviceRule

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

_ORDER = "rwm"

# Appended after the config's rules for every container, as runc does: mknod of any device
# (creating a node is harmless, opening it is what the rules guard), the standard character
# devices every process expects, the pty devices and /dev/net/tun.
DEFAULT_RULES: tuple[DeviceRule, ...] = (
    DeviceRule(True, "c", WILDCARD, WILDCARD, "m"),
    DeviceRule(True, "b", WILDCARD, WILDCARD, "m"),
    DeviceRule(True, "c", 1, 3, "rwm"),      # /dev/null
    DeviceRule(True, "c", 1, 8, "rwm"),      # /dev/random
    DeviceRule(True, "c", 1, 7, "rwm"),      # /dev/full
    DeviceRule(True, "c", 5, 0, "rwm"),      # /dev/tty
    DeviceRule(True, "c", 1, 5, "rwm"),      # /dev/zero
    DeviceRule(True, "c", 1, 9, "rwm"),      # /dev/urandom
    DeviceRule(True, "c", 136, WILDCARD, "rwm"),  # /dev/pts/*
    DeviceRule(True, "c", 5, 2, "rwm"),      # /dev/ptmx
    DeviceRule(True, "c", 10, 200, "rwm"),   # /dev/net/tun
)

Key = tuple[str, int, int]          # (type, major, minor)


def _union(a: str, b: str) -> str:
    return "".join(c for c in _ORDER if c in a or c in b)


def _minus(a: str, b: str) -> str:
    return "".join(c for c in a if c not in b)


class DeviceState:
    """What a v1 devices cgroup holds: a default and exceptions with their access.

    default_allow=True is the kernel's "a *:* rwm" (black-list) mode, where the exceptions are
    denials; False is white-list mode, where they are grants.
    """

    __slots__ = ("default_allow", "rules")

    def __init__(self, default_allow: bool = False, rules: dict[Key, str] | None = None) -> None:
        self.default_allow = default_allow
        self.rules: dict[Key, str] = dict(rules or {})

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, DeviceState) and self.default_allow == other.default_allow
                and self.rules == other.rules)

    def __repr__(self) -> str:
        return f"DeviceState(default_allow={self.default_allow}, rules={self.rules})"

    def play(self, rule: DeviceRule, field: str = "linux.resources.devices") -> None:
        """Apply one rule as the kernel would (writing it to devices.allow or devices.deny)."""
        if rule.type == "a":
            # The kernel ignores the rest of an "a" rule: it resets the cgroup.
            self.default_allow = rule.allow
            self.rules = {}
            return
        key = (rule.type, rule.major, rule.minor)
        if rule.allow != self.default_allow:
            # An exception to the default: add it (merging access).
            self.rules[key] = _union(self.rules.get(key, ""), rule.access)
            return
        # Same direction as the default: remove access from an exception. The kernel only
        # removes from an exception that matches exactly and silently ignores the rest, so a
        # hole in a wildcard exception would be lost: refuse it instead of pretending.
        for wild in ((rule.type, WILDCARD, rule.minor), (rule.type, rule.major, WILDCARD),
                     (rule.type, WILDCARD, WILDCARD)):
            if wild == key:
                continue
            overlap = _minus(rule.access, _minus(rule.access, self.rules.get(wild, "")))
            if overlap:
                held = DeviceRule(not rule.allow, wild[0], wild[1], wild[2], self.rules[wild])
                raise InvalidConfig(field, f"rule '{rule.cgroup_string()}' "
                                    f"({'allow' if rule.allow else 'deny'}) cuts a hole in the "
                                    f"earlier wildcard rule '{held.cgroup_string()}', which "
                                    "cgroup v1 cannot express")
        left = _minus(self.rules.get(key, ""), rule.access)
        if left:
            self.rules[key] = left
        else:
            self.rules.pop(key, None)


def target_state(rules: Iterable[DeviceRule] | None, field: str = "linux.resources.devices",
                 defaults: Iterable[DeviceRule] = DEFAULT_RULES) -> DeviceState:
    """The state the config asks for: a deny-all cgroup, the config's rules, then defaults."""
    state = DeviceState(default_allow=False)
    for i, rule in enumerate(rules or ()):
        state.play(rule, f"{field}[{i}]")
    for rule in defaults:
        state.play(rule, field)
    return state


def parse_list(text: str) -> DeviceState:
    """Read `devices.list`. It shows grants only: "a *:* rwm" means black-list mode, whose
    denials cannot be read back (so a black-list is always reset when changed)."""
    state = DeviceState(default_allow=False)
    for line in text.splitlines():
        parts = line.replace(":", " ").split()
        if len(parts) != 4:
            continue
        kind, major, minor, access = parts
        if kind == "a":
            return DeviceState(default_allow=True)
        state.rules[(kind, WILDCARD if major == "*" else int(major),
                     WILDCARD if minor == "*" else int(minor))] = _union(access, "")
    return state


def transition(current: DeviceState, target: DeviceState) -> list[DeviceRule]:
    """The writes that turn `current` into `target`, disturbing running processes as little
    as possible: no reset unless the default changes (or the current denials are unknown)."""
    out: list[DeviceRule] = []
    old = current.rules
    if current.default_allow or current.default_allow != target.default_allow:
        out.append(DeviceRule(target.default_allow, "a", WILDCARD, WILDCARD, _ORDER))
        old = {}
    grant = not target.default_allow      # the direction of an exception
    for key, access in old.items():
        dropped = _minus(access, target.rules.get(key, ""))
        if dropped:
            out.append(DeviceRule(not grant, key[0], key[1], key[2], dropped))
    for key, access in target.rules.items():
        gained = _minus(access, old.get(key, ""))
        if gained:
            out.append(DeviceRule(grant, key[0], key[1], key[2], gained))
    return out


def is_default(rules: Iterable[DeviceRule] | None) -> bool:
    """True when the rules ask for nothing beyond the runtime's defaults (deny all but the
    default devices) or for no restriction at all. Used where no device filter can be
    installed (cgroup v2 needs an eBPF program): such a config loses nothing it asked for
    beyond the defaults; anything else must be refused."""
    state = target_state(rules)
    return state == target_state(()) or (state.default_allow and not state.rules)
