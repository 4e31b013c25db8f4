"""The v1 devices emulator: ordered OCI rules -> kernel state -> minimal writes. Pure."""

from __future__ import annotations

import pytest

from berth.errors import InvalidConfig
from berth.runtime.cgroups import devices as dev
from berth.runtime.cgroups.resources import DeviceRule

W = -1


def r(allow: bool, kind: str = "a", major: int = W, minor: int = W, access: str = "rwm"
      ) -> DeviceRule:
    return DeviceRule(allow, kind, major, minor, access)


def state(rules: list[DeviceRule]) -> dev.DeviceState:
    return dev.target_state(rules, defaults=())


def test_later_rules_win() -> None:
    s = state([r(False), r(True, "c", 1, 3), r(False, "c", 1, 3, "w")])
    assert s == dev.DeviceState(False, {("c", 1, 3): "rm"})


def test_allow_all_then_deny_is_a_blacklist() -> None:
    s = state([r(True), r(False, "b", 8, 0)])
    assert s == dev.DeviceState(True, {("b", 8, 0): "rwm"})


def test_a_rule_resets_everything() -> None:
    assert state([r(True, "c", 1, 3), r(False, "a", 1, 3, "r")]) == dev.DeviceState(False, {})


def test_access_merges() -> None:
    assert state([r(True, "c", 4, W, "r"), r(True, "c", 4, W, "m")]).rules == {("c", 4, W): "rm"}


def test_hole_in_a_wildcard_is_refused() -> None:
    with pytest.raises(InvalidConfig) as err:
        dev.target_state([r(False), r(True, "c", W, W, "rw"), r(False, "c", 1, 3, "r")])
    assert err.value.field == "linux.resources.devices[2]"
    # No overlap in access: fine.
    dev.target_state([r(False), r(True, "c", W, W, "m"), r(False, "c", 1, 3, "r")])


def test_defaults_follow_the_config() -> None:
    s = dev.target_state([r(False), r(False, "c", 1, 3)])
    assert s.rules[("c", 1, 3)] == "rwm"          # the default grant comes after the deny
    assert s.rules[("c", 136, W)] == "rwm"
    assert not s.default_allow


def test_transition_from_a_new_cgroup() -> None:
    target = state([r(False), r(True, "c", 1, 3), r(True, "b", 7, W, "r")])
    rules = dev.transition(dev.DeviceState(default_allow=True), target)
    assert [x.cgroup_string() for x in rules] == ["a", "c 1:3 rwm", "b 7:* r"]
    assert [x.allow for x in rules] == [False, True, True]


def test_transition_to_a_blacklist() -> None:
    rules = dev.transition(dev.DeviceState(False, {("c", 1, 3): "rwm"}),
                           state([r(True), r(False, "c", 1, 5, "w")]))
    assert [(x.allow, x.cgroup_string()) for x in rules] == [(True, "a"), (False, "c 1:5 w")]


def test_transition_without_change_writes_nothing() -> None:
    s = state([r(False), r(True, "c", 1, 3)])
    assert dev.transition(dev.DeviceState(False, dict(s.rules)), s) == []


def test_transition_partial_access() -> None:
    rules = dev.transition(dev.DeviceState(False, {("c", 1, 3): "rwm"}),
                           state([r(False), r(True, "c", 1, 3, "r"), r(True, "c", 1, 5, "r")]))
    assert [(x.allow, x.cgroup_string()) for x in rules] == [(False, "c 1:3 wm"),
                                                             (True, "c 1:5 r")]


def test_parse_list() -> None:
    assert dev.parse_list("a *:* rwm\n") == dev.DeviceState(True, {})
    assert dev.parse_list("c 1:3 rwm\nb *:* m\nc 136:* rw\n") == dev.DeviceState(
        False, {("c", 1, 3): "rwm", ("b", W, W): "m", ("c", 136, W): "rw"})
    assert dev.parse_list("") == dev.DeviceState(False, {})


@pytest.mark.parametrize("rules,default", [
    (None, True),
    ([], True),
    ([r(False)], True),
    ([r(True)], True),
    ([r(False), r(True, "c", 1, 3), r(True, "c", 5, 2)], True),
    ([r(False), r(True, "c", 10, 229)], False),      # /dev/fuse: beyond the defaults
    ([r(True), r(False, "c", 4, 1)], False),          # a blacklist with an exception
])
def test_is_default(rules: list[DeviceRule] | None, default: bool) -> None:
    assert dev.is_default(rules) is default
