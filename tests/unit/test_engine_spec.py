"""`run` options and the config.json docker would give a container, as pure functions: every
cell of docker's CMD/ENTRYPOINT table, env merging, users from the image's passwd/group, sizes,
ulimits, mounts, capabilities and security options."""

from __future__ import annotations

import pytest

from berth.engine.options import (merge_env, parse_bytes, parse_cpus, parse_env_file,
                                  parse_mount, parse_tmpfs, parse_ulimit, parse_volume,
                                  resolve_command, resolve_user)
from berth.engine.spec import DEFAULT_CAPS, CreateOptions, capabilities, container_spec
from berth.errors import InvalidArgument
from berth.image.changes import apply_changes

# docker's table (Dockerfile reference, "Understand how CMD and ENTRYPOINT interact"), with the
# image's ENTRYPOINT and CMD made by --change as import and commit make them
ENTRYPOINTS = {"none": None, "shell": "ENTRYPOINT exec_entry p1_entry",
               "exec": 'ENTRYPOINT ["exec_entry", "p1_entry"]'}
CMDS = {"none": None, "exec": 'CMD ["exec_cmd", "p1_cmd"]',
        "default-params": 'CMD ["p1_cmd", "p2_cmd"]', "shell": "CMD exec_cmd p1_cmd"}
TABLE = {
    ("none", "none"): "error",
    ("none", "exec"): ["exec_cmd", "p1_cmd"],
    ("none", "default-params"): ["p1_cmd", "p2_cmd"],
    ("none", "shell"): ["/bin/sh", "-c", "exec_cmd p1_cmd"],
    ("shell", "none"): ["/bin/sh", "-c", "exec_entry p1_entry"],
    ("shell", "exec"): ["/bin/sh", "-c", "exec_entry p1_entry", "exec_cmd", "p1_cmd"],
    ("shell", "default-params"): ["/bin/sh", "-c", "exec_entry p1_entry", "p1_cmd", "p2_cmd"],
    ("shell", "shell"): ["/bin/sh", "-c", "exec_entry p1_entry", "/bin/sh", "-c",
                         "exec_cmd p1_cmd"],
    ("exec", "none"): ["exec_entry", "p1_entry"],
    ("exec", "exec"): ["exec_entry", "p1_entry", "exec_cmd", "p1_cmd"],
    ("exec", "default-params"): ["exec_entry", "p1_entry", "p1_cmd", "p2_cmd"],
    ("exec", "shell"): ["exec_entry", "p1_entry", "/bin/sh", "-c", "exec_cmd p1_cmd"],
}


@pytest.mark.parametrize("ep, cmd", sorted(TABLE))
def test_cmd_entrypoint_table(ep: str, cmd: str) -> None:
    changes = [c for c in (CMDS[cmd], ENTRYPOINTS[ep]) if c]  # CMD first: ENTRYPOINT keeps it
    cfg = apply_changes({}, changes)
    want = TABLE[(ep, cmd)]
    if want == "error":
        with pytest.raises(InvalidArgument, match="no command specified"):
            resolve_command(cfg.get("Entrypoint"), cfg.get("Cmd"), None, [])
        return
    assert resolve_command(cfg.get("Entrypoint"), cfg.get("Cmd"), None, []) == want


def test_args_replace_cmd_and_entrypoint_flag_clears_cmd() -> None:
    assert resolve_command(["ep"], ["c"], None, ["a", "b"]) == ["ep", "a", "b"]
    assert resolve_command(["ep"], ["c"], "/bin/other", []) == ["/bin/other"]
    assert resolve_command(["ep"], ["c"], "/bin/other", ["x"]) == ["/bin/other", "x"]
    assert resolve_command(["ep"], ["c"], "", ["ls"]) == ["ls"]


def test_env() -> None:
    assert merge_env(["PATH=/bin", "A=1"], ["A=2", "B=3", "HOSTVAR", "NOPE"],
                     {"HOSTVAR": "h"}) == ["PATH=/bin", "A=2", "B=3", "HOSTVAR=h"]
    with pytest.raises(InvalidArgument):
        merge_env([], ["=x"], {})
    assert parse_env_file("# c\n\nA=1\n  B= two \nC\n", "f") == ["A=1", "B= two ", "C"]
    with pytest.raises(InvalidArgument, match="f:1: variable 'A B' contains whitespaces"):
        parse_env_file("A B=1\n", "f")


PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1000:\nstaff:x:50:app,other\nwheel:x:10:app\n"


def test_users_from_the_image() -> None:
    assert resolve_user("", PASSWD, GROUP).uid == 0
    u = resolve_user("app", PASSWD, GROUP)
    assert (u.uid, u.gid, u.additional_gids, u.home) == (1000, 1000, (10, 50), "/home/app")
    assert resolve_user("app:staff", PASSWD, GROUP)[:3] == (1000, 50, ())
    assert resolve_user("4242", PASSWD, GROUP)[:2] == (4242, 0)
    assert resolve_user("4242:77", PASSWD, GROUP)[:2] == (4242, 77)
    with pytest.raises(InvalidArgument, match="unable to find user nobody"):
        resolve_user("nobody", PASSWD, GROUP)
    with pytest.raises(InvalidArgument, match="unable to find group nogroup"):
        resolve_user("app:nogroup", PASSWD, GROUP)


@pytest.mark.parametrize("text, value", [("512m", 512 << 20), ("1.5g", 3 << 29),
                                         ("1024", 1024), ("2GiB", 2 << 30), ("10 kb", 10240),
                                         ("7M", 7 << 20)])
def test_sizes(text: str, value: int) -> None:
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["12x", "", "m", "-1m", "1.5.x"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid size"):
        parse_bytes(text)


def test_cpus_and_ulimits() -> None:
    assert parse_cpus("1.5") == (150_000, 100_000)
    with pytest.raises(InvalidArgument):
        parse_cpus("lots")
    assert parse_ulimit("nofile=1024:2048") == {"type": "RLIMIT_NOFILE", "soft": 1024,
                                                "hard": 2048}
    assert parse_ulimit("nproc=64")["hard"] == 64
    for bad in ("nofile", "bogus=1", "nofile=2:1", "nofile=a"):
        with pytest.raises(InvalidArgument):
            parse_ulimit(bad)


def test_mount_flags() -> None:
    v = parse_volume("/srv/data:/data:ro")
    assert (v.kind, v.source, v.target, v.readonly, v.create_source) == \
        ("bind", "/srv/data", "/data", True, True)
    assert parse_volume("cache:/cache").kind == "volume"
    assert parse_volume("/anon").kind == "volume" and parse_volume("/anon").source == ""
    m = parse_mount("type=bind,source=/srv,target=/srv,readonly")
    assert (m.kind, m.readonly, m.create_source) == ("bind", True, False)
    assert parse_mount("type=tmpfs,dst=/t,tmpfs-size=1m").options == ("size=1048576",)
    assert parse_tmpfs("/run:size=64m,mode=1777").options == ("size=64m", "mode=1777")
    for bad in ("./rel:/x", "/x:relative", "/x:/y:bogus", "/:/"):
        with pytest.raises(InvalidArgument):
            parse_volume(bad)
    for bad in ("type=bind,target=/x", "type=bind,source=rel,target=/x", "type=nfs,target=/x",
                "type=bind,source=/x"):
        with pytest.raises(InvalidArgument):
            parse_mount(bad)


def test_capabilities() -> None:
    host = sorted({*DEFAULT_CAPS, "CAP_SYS_ADMIN", "CAP_NET_ADMIN"})
    caps = capabilities(["NET_ADMIN"], ["chown", "CAP_KILL"], False, host)
    assert "CAP_NET_ADMIN" in caps and "CAP_CHOWN" not in caps and "CAP_KILL" not in caps
    assert capabilities(["ALL"], [], False, host) == host
    assert capabilities(["CAP_KILL"], ["ALL"], False, host) == ["CAP_KILL"]
    assert capabilities([], [], True, host) == host
    with pytest.raises(InvalidArgument, match="unknown capability"):
        capabilities(["CAP_BOGUS"], [], False, host)


def test_container_spec_as_docker_makes_it() -> None:
    image = apply_changes({"Env": ["PATH=/opt/bin:/bin"]},
                          ['CMD ["serve"]', "WORKDIR /srv", "USER app", "ENV MODE=prod"])
    opts = CreateOptions(args=[], env=["MODE=dev", "EXTRA=1"], memory="64m", cpus="0.5",
                         pids_limit=50, ulimits=["nofile=100:200"], tty=True,
                         security_opt=["no-new-privileges"])
    spec = container_spec(image, opts, rootfs="/r", hostname="abc123", passwd=PASSWD,
                          group=GROUP)
    p = spec["process"]
    assert p["args"] == ["serve"] and p["cwd"] == "/srv" and p["terminal"] is True
    assert p["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10, 50]}
    assert p["env"] == ["PATH=/opt/bin:/bin", "HOSTNAME=abc123", "TERM=xterm", "MODE=dev",
                        "EXTRA=1", "HOME=/home/app"]
    assert p["noNewPrivileges"] is True
    assert p["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]
    assert sorted(p["capabilities"]["bounding"]) == sorted(DEFAULT_CAPS)
    res = spec["linux"]["resources"]
    assert res["memory"] == {"limit": 64 << 20, "swap": 128 << 20}
    assert res["cpu"] == {"quota": 50_000, "period": 100_000}
    assert res["pids"] == {"limit": 50}
    assert {n["type"] for n in spec["linux"]["namespaces"]} == {"pid", "ipc", "uts", "mount",
                                                                "network"}
    assert spec["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert "/proc/kcore" in spec["linux"]["maskedPaths"]
    host = container_spec(image, CreateOptions(network="host", privileged=True,
                                               security_opt=["seccomp=unconfined"]),
                          rootfs="/r", hostname="h", passwd=PASSWD, group=GROUP)
    assert "network" not in {n["type"] for n in host["linux"]["namespaces"]}
    assert "seccomp" not in host["linux"] and "maskedPaths" not in host["linux"]
    assert host["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]


@pytest.mark.parametrize("opts, message", [
    (CreateOptions(memory="12x"), "invalid size: '12x'"),
    (CreateOptions(memory="1m"), "Minimum memory limit allowed is 6MB"),
    (CreateOptions(memory_swap="1g"), "always set the Memory limit"),
    (CreateOptions(workdir="rel"), "needs to be an absolute path"),
    (CreateOptions(user="ghost"), "unable to find user ghost"),
    (CreateOptions(security_opt=["bogus"]), "invalid --security-opt"),
    (CreateOptions(ulimits=["nofile=9:1"]), "soft limit must be less"),
])
def test_bad_options_name_what_is_wrong(opts: CreateOptions, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        container_spec({"Cmd": ["sh"]}, opts, rootfs="/r", hostname="h", passwd=PASSWD,
                       group=GROUP)


def test_health_config_and_state_rules() -> None:
    from berth.engine.health import health_config, next_state
    image = {"Test": ["CMD-SHELL", "curl -f localhost"], "Interval": 5_000_000_000}
    cfg = health_config(image, {"retries": "2", "timeout": "3s"})
    assert cfg == {"Test": ["CMD-SHELL", "curl -f localhost"], "Interval": 5_000_000_000,
                   "Timeout": 3_000_000_000, "StartPeriod": 0, "Retries": 2}
    assert health_config(image, {"cmd": "true"})["Test"] == ["CMD-SHELL", "true"]
    assert health_config(image, {"no_healthcheck": True}) is None
    assert health_config({"Test": ["NONE"]}, {}) is None and health_config(None, {}) is None
    with pytest.raises(InvalidArgument):
        health_config({"Test": ["BOGUS", "x"]}, {})
    s = {"Status": "starting", "FailingStreak": 0}
    s = next_state(s, False, True, 2)
    assert s == {"Status": "starting", "FailingStreak": 0}  # start period: not counted
    s = next_state(s, True, True, 2)
    assert s["Status"] == "healthy"
    s = next_state(next_state(s, False, False, 2), False, False, 2)
    assert s == {"Status": "unhealthy", "FailingStreak": 2}


def test_add_host_device_sysctl_and_group_parsers() -> None:
    from berth.engine.options import (DeviceMapping, parse_add_host, parse_device,
                                      parse_sysctl, resolve_groups)
    assert parse_add_host("db:10.0.0.5") == ("db", "10.0.0.5")
    assert parse_add_host("db=10.0.0.5") == ("db", "10.0.0.5")
    assert parse_add_host("v6:::1") == ("v6", "::1")  # split at the first colon, as docker
    assert parse_add_host("v6=[fe80::1]") == ("v6", "fe80::1")
    assert parse_add_host("gw:host-gateway") == ("gw", "host-gateway")
    for bad, words in (("db", "bad format"), (":1.2.3.4", "bad format"), ("db:", "bad format"),
                       ("db:1.2.3", "invalid IP address"), ("db:example.com", "invalid IP")):
        with pytest.raises(InvalidArgument, match=words):
            parse_add_host(bad)
    assert parse_device("/dev/fuse") == DeviceMapping("/dev/fuse", "/dev/fuse", "rwm")
    assert parse_device("/dev/sda:/dev/xvda") == DeviceMapping("/dev/sda", "/dev/xvda", "rwm")
    assert parse_device("/dev/sda:/dev/xvda:r") == DeviceMapping("/dev/sda", "/dev/xvda", "r")
    assert parse_device("/dev/sda:rw") == DeviceMapping("/dev/sda", "/dev/sda", "rw")
    for bad in ("", "dev/sda", "/dev/sda:xvda", "/dev/a:/dev/b:rwx", "/a:/b:r:extra"):
        with pytest.raises(InvalidArgument, match="invalid device specification"):
            parse_device(bad)
    assert parse_sysctl("net.ipv4.ip_forward=1", "bridge") == ("net.ipv4.ip_forward", "1")
    assert parse_sysctl("kernel.shmmax=1", "host") == ("kernel.shmmax", "1")
    assert parse_sysctl("fs.mqueue.msg_max=20", "none") == ("fs.mqueue.msg_max", "20")
    with pytest.raises(InvalidArgument, match="not allowed in host network mode"):
        parse_sysctl("net.ipv4.ip_forward=1", "host")
    for bad in ("kernel.panic=1", "vm.swappiness=1", "kernel.hostname=x"):
        with pytest.raises(InvalidArgument, match="not namespaced"):
            parse_sysctl(bad, "bridge")
    with pytest.raises(InvalidArgument, match="expected KEY=VALUE"):
        parse_sysctl("net.ipv4.ip_forward", "bridge")
    group = "root:x:0:\naudio:x:29:\n"
    assert resolve_groups(["audio", "4242", "0"], group) == (29, 4242, 0)
    with pytest.raises(InvalidArgument, match="Unable to find group video"):
        resolve_groups(["video"], group)


def test_spec_of_shm_size_sysctls_groups_and_devices() -> None:
    zero = {"path": "/dev/z", "type": "c", "major": 1, "minor": 5, "fileMode": 0o666,
            "uid": 0, "gid": 0, "access": "r"}
    opts = CreateOptions(args=["true"], shm_size="8m", sysctls=["kernel.shmmax=9"],
                         group_add=["audio", "77"], network="none")
    spec = container_spec({}, opts, rootfs="/r", hostname="h", group="audio:x:29:\n",
                          devices=[zero])
    shm = next(m for m in spec["mounts"] if m["destination"] == "/dev/shm")
    assert "size=8388608" in shm["options"]
    assert spec["linux"]["sysctl"] == {"kernel.shmmax": "9"}
    assert spec["process"]["user"]["additionalGids"] == [29, 77]
    assert spec["linux"]["devices"] == [{k: v for k, v in zero.items() if k != "access"}]
    assert spec["linux"]["resources"]["devices"][-1] == \
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"}
    plain = container_spec({}, CreateOptions(args=["true"], shm_size="0"), rootfs="/r",
                           hostname="h")
    assert "size=67108864" in next(m for m in plain["mounts"]
                                   if m["destination"] == "/dev/shm")["options"]
    assert "sysctl" not in plain["linux"] and "devices" not in plain["linux"]


def test_spec_of_pid_ipc_and_uts_modes() -> None:
    def spec(**kw: str) -> dict:
        return container_spec({}, CreateOptions(args=["true"], **kw), rootfs="/r",
                              hostname="h")

    def kinds(s: dict) -> list:
        return [n["type"] for n in s["linux"]["namespaces"]]

    assert kinds(spec()) == ["pid", "ipc", "uts", "mount", "network"]
    host = spec(pid_mode="host", ipc_mode="host", uts_mode="host")
    assert kinds(host) == ["mount", "network"] and "hostname" not in host
    shm = [m for m in host["mounts"] if m["destination"] == "/dev/shm"]
    assert shm == [{"destination": "/dev/shm", "type": "bind", "source": "/dev/shm",
                    "options": ["rbind", "rprivate", "rw"]}]
    assert not [m for m in spec(ipc_mode="none")["mounts"] if m["destination"] == "/dev/shm"]
    joined = spec(pid_mode="container:" + "a" * 64)  # the path is written at each start
    assert kinds(joined)[0] == "pid" and "path" not in joined["linux"]["namespaces"][0]


def test_namespace_mode_values() -> None:
    from berth.engine.sharing import parse_mode
    assert parse_mode("", "--pid", ("host",)) == ("", "")
    assert parse_mode("host", "--pid", ("host",)) == ("host", "")
    assert parse_mode("container:web", "--pid", ("host",)) == ("container", "web")
    for text, flag, joinable, words in (
            ("bogus", "--pid", True, "expected host, container:NAME"),
            ("container:", "--pid", True, "a container name or id is needed"),
            ("container:web", "--ipc", False, "is not supported by berth"),
            ("container:web", "--uts", False, "invalid --uts value")):
        with pytest.raises(InvalidArgument, match=words):
            parse_mode(text, flag, ("host",), joinable)
