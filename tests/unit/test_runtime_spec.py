"""config.json parsing: every error names the field that is wrong."""

from __future__ import annotations

import copy
import json

import pytest

from berth.errors import InvalidConfig
from berth.oci.runtime_spec import Spec, parse_spec
from berth.runtime.default_spec import default_config


def cfg(**changes):
    c = copy.deepcopy(default_config())
    for dotted, value in changes.items():
        obj = c
        keys = dotted.split("__")
        for k in keys[:-1]:
            obj = obj[int(k)] if isinstance(obj, list) else obj.setdefault(k, {})
        if value is KeyError:
            del obj[keys[-1]]
        elif isinstance(obj, list):
            obj[int(keys[-1])] = value
        else:
            obj[keys[-1]] = value
    return c


def test_default_config_parses():
    spec = parse_spec(default_config())
    assert spec.process.args == ("sh",)
    assert spec.process.no_new_privileges is True
    assert spec.linux.namespace("pid") is not None
    assert spec.linux.namespace("user") is None
    assert spec.mounts[0].destination == "/proc"
    assert spec.root_readonly is True


@pytest.mark.parametrize("changes, field", [
    ({"ociVersion": KeyError}, "ociVersion"),
    ({"ociVersion": "2.0.0"}, "ociVersion"),
    ({"root": KeyError}, "root"),
    ({"root__path": ""}, "root.path"),
    ({"process__args": []}, "process.args"),
    ({"process__args": "sh"}, "process.args"),
    ({"process__args": ["sh", 3]}, "process.args[1]"),
    ({"process__cwd": "relative"}, "process.cwd"),
    ({"process__cwd": KeyError}, "process.cwd"),
    ({"process__env": ["NOEQUALS"]}, "process.env[0]"),
    ({"process__user__uid": -1}, "process.user.uid"),
    ({"process__user__uid": "0"}, "process.user.uid"),
    ({"process__terminal": "yes"}, "process.terminal"),
    ({"process__rlimits": [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]}, "process.rlimits[0].type"),
    ({"process__rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]}, "process.rlimits[0]"),
    ({"process__capabilities__bogus": []}, "process.capabilities.bogus"),
    ({"process__oomScoreAdj": 5000}, "process.oomScoreAdj"),
    ({"mounts": [{"destination": "relative"}]}, "mounts[0].destination"),
    ({"mounts": [{"destination": "/x", "options": "ro"}]}, "mounts[0].options"),
    ({"linux__namespaces": [{"type": "bogus"}]}, "linux.namespaces[0].type"),
    ({"linux__namespaces": [{"type": "pid"}, {"type": "pid"}]}, "linux.namespaces[1].type"),
    ({"linux__namespaces": [{"type": "pid", "path": "rel"}]}, "linux.namespaces[0].path"),
    ({"linux__devices": [{"path": "/dev/x", "type": "q", "major": 1, "minor": 1}]}, "linux.devices[0].type"),
    ({"linux__devices": [{"path": "/dev/x", "type": "c", "minor": 1}]}, "linux.devices[0].major"),
    ({"linux__rootfsPropagation": "sideways"}, "linux.rootfsPropagation"),
    ({"linux__uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}, "linux.uidMappings"),
    ({"hooks": {"prestart": [{"path": "rel"}]}}, "hooks.prestart[0].path"),
    ({"hooks": {"later": []}}, "hooks.later"),
])
def test_bad_fields_are_named(changes, field):
    with pytest.raises(InvalidConfig) as info:
        parse_spec(cfg(**changes))
    assert info.value.field == field
    assert field in str(info.value)


def test_hostname_needs_uts_namespace():
    c = cfg()
    c["linux"]["namespaces"] = [{"type": "pid"}, {"type": "mount"}]
    with pytest.raises(InvalidConfig) as info:
        parse_spec(c)
    assert info.value.field == "hostname"


def test_user_namespace_needs_mappings():
    c = cfg()
    c["linux"]["namespaces"].append({"type": "user"})
    with pytest.raises(InvalidConfig):
        parse_spec(c)
    c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    spec = parse_spec(c)
    assert spec.linux.uid_mappings[0].host_id == 100000


def test_not_json_is_a_config_error():
    with pytest.raises(InvalidConfig) as info:
        Spec.from_json(b"{nope")
    assert info.value.field == "config.json"


def test_process_fields():
    c = cfg()
    c["process"].update(user={"uid": 1000, "gid": 1000, "additionalGids": [5, 6], "umask": 0o077},
                        consoleSize={"height": 30, "width": 100}, oomScoreAdj=100)
    spec = parse_spec(json.loads(json.dumps(c)))
    p = spec.process
    assert p.user.additional_gids == (5, 6) and p.user.umask == 0o077
    assert p.console_size == (30, 100)
    assert p.oom_score_adj == 100
    assert p.rlimits[0].type == "RLIMIT_NOFILE"
