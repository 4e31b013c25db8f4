"""Volumes, the pure parts: names, `-v`/`--mount` volume options, the local driver's options,
which volumes a container gets where, mount flags, label filters, docker's natural order, and
the depth order of mounts in config.json."""

from __future__ import annotations

import pytest

from berth.engine.options import BindMount, parse_mount, parse_volume
from berth.engine.spec import CreateOptions, container_spec
from berth.engine.volumes import (
    ANONYMOUS_LABEL,
    MS_BIND,
    MS_NOEXEC,
    MS_RDONLY,
    MS_REC,
    VolumeUse,
    check_name,
    labels_match,
    mount_flags,
    natural_key,
    parse_key_values,
    plan_uses,
    spec_mounts,
    validate_options,
)
from berth.errors import InvalidArgument


@pytest.mark.parametrize("name", ["ab", "my-vol", "a.b_c-1", "0" * 64, "A9"])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["a/b", "../x", ".x", "-x", "_x", "a b", "a:b", "é1", "ab\n",
                                  "x" * 256, "a*"])
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidArgument, match="includes invalid characters for a local volume "
                       r"name, only \"\[a-zA-Z0-9\]\[a-zA-Z0-9_.-\]\" are allowed"):
        check_name(name)


def test_one_character_name_is_too_short() -> None:
    with pytest.raises(InvalidArgument, match="volume name is too short"):
        check_name("x")


def test_dash_v_volume_forms() -> None:
    assert parse_volume("data:/d") == BindMount("volume", "data", "/d")
    assert parse_volume("data:/d:ro") == BindMount("volume", "data", "/d", readonly=True)
    assert parse_volume("data:/d:ro,nocopy") == BindMount("volume", "data", "/d", True,
                                                          options=("nocopy",))
    assert parse_volume("/anon") == BindMount("volume", "", "/anon")
    assert parse_volume("/host:/d").kind == "bind"


def test_mount_volume_options() -> None:
    m = parse_mount("type=volume,source=v,target=/t,readonly,volume-nocopy,"
                    "volume-label=a=1,volume-label=b,volume-opt=type=tmpfs,"
                    "volume-opt=device=tmpfs,volume-driver=local")
    assert (m.kind, m.source, m.target, m.readonly) == ("volume", "v", "/t", True)
    assert m.options == ("nocopy", "label:a=1", "label:b", "opt:type=tmpfs",
                         "opt:device=tmpfs", "driver:local")
    assert parse_mount("target=/t").kind == "volume"  # type defaults to volume (anonymous)
    assert parse_mount("type=volume,target=/t,volume-nocopy=false").options == ()
    with pytest.raises(InvalidArgument, match="only for type=volume"):
        parse_mount("type=bind,source=/x,target=/t,volume-nocopy")


def test_plan_uses() -> None:
    counter = iter(f"anon{i}" for i in range(10))
    mounts = [parse_volume("named:/n:ro"), parse_volume("/scratch"),
              parse_mount("type=volume,target=/m,volume-nocopy,volume-label=k=v"),
              parse_volume("/host:/data")]
    uses = plan_uses({"/data": {}, "/cache/": {}, "/n": {}}, mounts,
                     new_name=lambda: next(counter))
    assert uses == [
        VolumeUse("named", "/n", readonly=True),
        VolumeUse("anon0", "/scratch", anonymous=True),
        VolumeUse("anon1", "/m", copy=False, anonymous=True, labels={"k": "v"}),
        VolumeUse("anon2", "/cache", anonymous=True),  # /data and /n: the caller's mounts win
    ]
    assert uses[0].record() == {"name": "named", "destination": "/n", "rw": False,
                                "copy": True, "anonymous": False}


def test_plan_refuses_duplicates_bad_names_and_drivers() -> None:
    with pytest.raises(InvalidArgument, match="Duplicate mount point: /x"):
        plan_uses(None, [parse_volume("a1:/x"), parse_volume("/h:/x")])
    with pytest.raises(InvalidArgument, match="invalid characters"):
        plan_uses(None, [BindMount("volume", "../../etc", "/x")])
    with pytest.raises(InvalidArgument, match="not found"):
        plan_uses(None, [parse_mount("type=volume,source=v1,target=/x,volume-driver=nfs")])
    with pytest.raises(InvalidArgument, match="must be absolute"):
        plan_uses({"relative": {}}, [])


def test_local_driver_options() -> None:
    assert validate_options({}) == {}
    tmpfs = {"type": "tmpfs", "device": "tmpfs", "o": "size=1m,uid=1000"}
    assert validate_options(tmpfs) == tmpfs
    assert validate_options({"type": "none", "device": "/", "o": "bind,ro"})["o"] == "bind,ro"
    for opts, msg in (({"foo": "1"}, 'invalid option: "foo"'),
                      ({"type": "tmpfs"}, 'missing required option: "device"'),
                      ({"device": "x"}, 'missing required option: "type"'),
                      ({"o": "size=1m"}, "missing required option"),
                      ({"size": "10m"}, "no quota support"),
                      ({"type": "none", "device": "/"}, "needs o=bind"),
                      ({"type": "none", "device": "rel", "o": "bind"}, "must be absolute"),
                      ({"type": "none", "device": "/no/such/dir", "o": "bind"},
                       "does not exist"),
                      ({"type": "nfs", "device": ":/x", "o": "addr=1.2.3.4"}, "type=nfs")):
        with pytest.raises(InvalidArgument, match=msg):
            validate_options(opts)


def test_mount_flags() -> None:
    assert mount_flags("") == (0, "")
    assert mount_flags("size=64m,ro,noexec,mode=1777") == (MS_RDONLY | MS_NOEXEC,
                                                           "size=64m,mode=1777")
    assert mount_flags("rbind,rw") == (MS_BIND | MS_REC, "")


def test_key_values_and_labels() -> None:
    assert parse_key_values(["a=1", "b", "c=x=y"], "label") == {"a": "1", "b": "", "c": "x=y"}
    with pytest.raises(InvalidArgument):
        parse_key_values(["novalue"], "option")
    labels = {"tier": "db", ANONYMOUS_LABEL: ""}
    assert labels_match(labels, ["tier", "tier=db", ANONYMOUS_LABEL])
    assert not labels_match(labels, ["tier=web"])
    assert labels_match(labels, ["tier=web"], negate=True)
    assert not labels_match(labels, ["tier"], negate=True)


def test_natural_order() -> None:
    assert sorted(["v10", "v9", "a", "v1", "B"], key=natural_key) == ["B", "a", "v1", "v9",
                                                                       "v10"]


def test_volumes_in_the_spec_in_depth_order() -> None:
    uses = [VolumeUse("deep", "/a/b/c"), VolumeUse("top", "/a", readonly=True)]
    mounts = spec_mounts("/var/lib/berth", uses)
    assert mounts[1] == {"destination": "/a", "type": "bind",
                         "source": "/var/lib/berth/volumes/top/_data",
                         "options": ["rbind", "ro"]}
    opts = CreateOptions(args=["true"], mounts=[BindMount("bind", "/h", "/a/b")])
    spec = container_spec({}, opts, rootfs="/r", hostname="h", volume_mounts=mounts)
    tail = [m["destination"] for m in spec["mounts"]][-3:]
    assert tail == ["/a", "/a/b", "/a/b/c"]
