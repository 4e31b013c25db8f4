"""Each config.json field does what the OCI runtime spec (config.md, config-linux.md) says,
checked through the `berth-runtime` command line on the real kernel.

The container is the probe: a busybox shell prints "key=value" facts about what it sees (ids,
/proc/self/status, mount table, namespaces); the test compares them with the config and with
the host. One container prints many facts, so the whole file runs in a few seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from helpers.bundle import DELETE, default_config, update_config
from helpers.runtime import (ConsoleServer, assert_nothing_left, facts, rt,  # noqa: F401
                             status_fields)

DEFAULT_MOUNTS = default_config()["mounts"]
HOST_ONLY_NS = ("pid", "network", "ipc", "uts", "mount", "cgroup", "time")
NS_FILE = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt",
           "cgroup": "cgroup", "time": "time", "user": "user"}


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


# Numbers from linux/capability.h, written out here so the test does not trust berth's table.
CAP_NUMBERS = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_KILL": 5, "CAP_SETGID": 6,
               "CAP_SETUID": 7, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_RAW": 13,
               "CAP_SYS_CHROOT": 18, "CAP_MKNOD": 27}


def cap_mask(names: list[str]) -> int:
    out = 0
    for n in names:
        out |= 1 << CAP_NUMBERS[n]
    return out


def mountinfo(text: str) -> dict[str, dict[str, str]]:
    """mountinfo lines -> {mountpoint: {"opts", "tags", "fstype", "source", "super"}}."""
    out = {}
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        lf, rf = left.split(), right.split()
        if not sep or len(lf) < 6 or len(rf) < 3:
            continue
        out[lf[4]] = {"root": lf[3], "opts": lf[5], "tags": " ".join(lf[6:]), "fstype": rf[0],
                      "source": rf[1], "super": rf[2]}
    return out


def section(text: str, name: str) -> str:
    """The lines between '---name' and the next '---' marker."""
    lines = text.split(f"---{name}\n", 1)[1].split("\n---", 1)[0]
    return lines


# -- process ---------------------------------------------------------------------------------

def test_args_reach_the_program_verbatim(rt, bundle):
    script = ('echo "argv0=$0"; i=1; for a in "$@"; do echo "arg$i=[$a]"; i=$((i+1)); done;'
              ' echo "count=$#"; echo "pid=$$"')
    b = bundle(sh(script) + ["zero", "a b", "", "*", "$HOME", "--x=1"])
    f = facts(rt.run_ok(b, "args1"))
    assert f["argv0"] == "zero"
    assert [f[f"arg{i}"] for i in range(1, 6)] == ["[a b]", "[]", "[*]", "[$HOME]", "[--x=1]"]
    assert f["count"] == "5"
    assert f["pid"] == "1"  # the process is the init of its pid namespace


def test_env_is_exactly_the_config_env_and_home(rt, bundle):
    env = ["PATH=/bin:/usr/bin", "A=1", "B=x=y", "EMPTY=", "SPACED=a b  c"]
    out = rt.run_ok(bundle(["env"], process={"env": env}), "env1")
    # Nothing else: no variable of the runtime's own environment leaks in. HOME, absent from
    # the config, comes from /etc/passwd for uid 0 (as runc does).
    assert sorted(out.splitlines()) == sorted(env + ["HOME=/root"])
    out = rt.run_ok(bundle(["env"], process={"env": env + ["HOME=/custom"]}), "env2")
    assert sorted(out.splitlines()) == sorted(env + ["HOME=/custom"])


def test_user_ids_groups_umask_and_home(rt, bundle):
    script = (
        'echo "uid=$(id -u)"; echo "gid=$(id -g)"; echo "idG=$(id -G)"; echo "umask=$(umask)";'
        ' echo "home=$HOME"; touch /tmp/f; mkdir /tmp/d;'
        ' echo "fmode=$(stat -c %a /tmp/f)"; echo "dmode=$(stat -c %a /tmp/d)";'
        ' echo "owner=$(stat -c %u:%g /tmp/f)";'
        ' grep -E "^(Uid|Gid|Groups):" /proc/self/status | tr "\\t" " " | sed "s/: */=/"')
    b = bundle(sh(script), root={"readonly": False},
               process={"user": {"uid": 1000, "gid": 1000, "additionalGids": [10, 65534],
                                 "umask": 0o027}})
    f = facts(rt.run_ok(b, "user1"))
    assert (f["uid"], f["gid"]) == ("1000", "1000")
    assert f["Uid"].split() == ["1000"] * 4  # real, effective, saved, fs
    assert f["Gid"].split() == ["1000"] * 4
    assert sorted(f["Groups"].split()) == ["10", "65534"]  # exactly additionalGids
    assert f["idG"].split()[0] == "1000" and sorted(f["idG"].split()[1:]) == ["10", "65534"]
    assert f["umask"] == "0027"
    assert (f["fmode"], f["dmode"]) == ("640", "750")
    assert f["owner"] == "1000:1000"
    assert f["home"] == "/home/app"  # from the rootfs' /etc/passwd


def test_default_umask_and_root_user(rt, bundle):
    b = bundle(sh('echo "umask=$(umask)"; echo "id=$(id -u):$(id -g)"; echo "groups=$(id -G)";'
                  ' touch /tmp/f; echo "fmode=$(stat -c %a /tmp/f)"'), root={"readonly": False})
    f = facts(rt.run_ok(b, "umask1"))
    assert f["umask"] == "0022" and f["fmode"] == "644"
    assert f["id"] == "0:0" and f["groups"] == "0"


@pytest.mark.parametrize("readonly", [
    False,
    pytest.param(True),
], ids=["rw-root", "ro-root"])
def test_cwd_is_created_when_missing(rt, bundle, readonly):
    b = bundle(sh('echo "pwd=$(pwd)"; echo "phys=$(pwd -P)"; echo "mode=$(stat -c %a .)"'),
               process={"cwd": "/work/deep/dir"}, root={"readonly": readonly})
    f = facts(rt.run_ok(b, f"cwd{int(readonly)}"))
    assert f["pwd"] == f["phys"] == "/work/deep/dir"
    assert f["mode"] == "755"
    assert (b / "rootfs/work/deep/dir").is_dir()


def test_terminal_through_console_socket(rt, bundle, berth_env):
    srv = ConsoleServer(berth_env.tmp / "console.sock")
    try:
        script = ('echo "tty=$(tty)"; echo "fd0=$(readlink /proc/self/fd/0)";'
                  ' echo "fd1=$(readlink /proc/$$/fd/1)"; [ -t 0 ] && echo stdin_tty=yes;'
                  ' echo "console=$(stat -c %t:%T /dev/console)";'
                  ' echo "pts0=$(stat -c %t:%T /dev/pts/0)"; echo "size=$(stty size)";'
                  ' echo "consolemount=$(grep -c " /dev/console " /proc/self/mountinfo)";'
                  ' echo "sid=$(cut -d" " -f6 /proc/self/stat)"')
        b = bundle(sh(script), process={"terminal": True,
                                        "consoleSize": {"height": 33, "width": 101}})
        rt("create", "--bundle", str(b), "--console-socket", str(srv.path), "tty1")
        assert srv.got_fd.wait(10), "no pty master arrived on the console socket"
        rt("start", "tty1")
        out = srv.wait()
        rt.wait_status("tty1", "stopped")
        rt("delete", "tty1")
    finally:
        srv.close()
    f = facts(out)
    assert f["tty"] == "/dev/pts/0"  # the container's own devpts instance
    assert f["fd0"] == f["fd1"] == "/dev/pts/0"
    assert f.get("stdin_tty") == "yes"
    assert f["console"] == f["pts0"] == "88:0"  # /dev/console is the pty (136 = 0x88)
    assert f["consolemount"] == "1"
    assert f["size"] == "33 101"
    assert f["sid"] == "1"  # the init leads its session, with the pty as controlling terminal


def test_terminal_without_console_socket_is_an_error(rt, bundle):
    proc = rt("create", "--bundle", str(bundle(process={"terminal": True})), "tty2", check=False)
    assert proc.returncode != 0
    assert "process.terminal" in proc.stderr and "console-socket" in proc.stderr
    assert_nothing_left(rt, "tty2")


def test_rlimits_oom_score_adj_and_no_new_privileges(rt, bundle):
    script = ('echo "n=$(ulimit -n)"; echo "Hn=$(ulimit -H -n)"; echo "u=$(ulimit -u)";'
              ' echo "Hu=$(ulimit -H -u)"; echo "core=$(ulimit -c)";'
              ' echo "oom=$(cat /proc/self/oom_score_adj)";'
              ' grep NoNewPrivs /proc/self/status | tr -d "\\t" | sed "s/:/=/"')
    b = bundle(sh(script), process={
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1000, "hard": 2000},
                    {"type": "RLIMIT_NPROC", "soft": 500, "hard": 600},
                    {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}],
        "oomScoreAdj": 500, "noNewPrivileges": True})
    f = facts(rt.run_ok(b, "rlim1"))
    assert (f["n"], f["Hn"]) == ("1000", "2000")
    assert (f["u"], f["Hu"]) == ("500", "600")
    assert f["core"] == "0"
    assert f["oom"] == "500"
    assert f["NoNewPrivs"] == "1"
    b = bundle(sh(script), process={"noNewPrivileges": False, "rlimits": []})
    f = facts(rt.run_ok(b, "rlim2"))
    assert f["NoNewPrivs"] == "0"
    assert f["oom"] == "0"  # unset: inherited from the runtime, unchanged


def test_negative_oom_score_adj_needs_cap_sys_resource(rt, bundle, berth_env):
    """This host's bounding set lacks CAP_SYS_RESOURCE, so no process may lower its
    oom_score_adj: a clear error naming the field, and nothing left behind."""
    b = bundle(["true"], process={"oomScoreAdj": -500})
    proc = rt("create", "--bundle", str(b), "oom1", check=False)
    assert proc.returncode != 0
    assert "process.oomScoreAdj" in proc.stderr and "-500" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert_nothing_left(rt, "oom1", b)


CAP_CASES = {
    # root: after exec the kernel gives uid 0 permitted = effective = bounding (| inheritable),
    # so the config lists the same set there, as `runc spec` does.
    "root": ({"uid": 0, "gid": 0}, {
        "bounding": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_NET_BIND_SERVICE",
                     "CAP_SETUID", "CAP_SETGID", "CAP_SYS_CHROOT"],
        "effective": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_NET_BIND_SERVICE",
                      "CAP_SETUID", "CAP_SETGID", "CAP_SYS_CHROOT"],
        "permitted": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_NET_BIND_SERVICE",
                      "CAP_SETUID", "CAP_SETGID", "CAP_SYS_CHROOT"],
        "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_KILL"]}, True, {"chown": "ok", "bind80": "ok"}),
    # a non-root user keeps across exec exactly its ambient set (as permitted and effective).
    "app": ({"uid": 1000, "gid": 1000}, {
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
        "effective": ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
        "permitted": ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
        "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
        "ambient": ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"]}, False,
        {"chown": "denied", "bind80": "ok"}),
    # root with every set empty is root in name only.
    "none": ({"uid": 0, "gid": 0}, {k: [] for k in ("bounding", "effective", "permitted",
                                                    "inheritable", "ambient")},
             True, {"chown": "denied", "bind80": "denied"}),
}


def test_capability_sets(rt, bundle):
    """Each of the five sets shows in /proc/self/status as the mask of its names, and the
    capabilities act: CAP_CHOWN for chown(2) of another's file, CAP_NET_BIND_SERVICE for
    listening on port 80 (seen in /proc/net/tcp6: local port 0x0050, state 0A = LISTEN)."""
    script = ('grep -E "^(Cap|NoNewPrivs)" /proc/self/status | tr -d "\\t" | sed "s/:/=/";'
              ' touch /tmp/f; chown 65534 /tmp/f 2>/dev/null && echo chown=ok || echo chown=denied;'
              ' nc -l -p 80 </dev/null >/dev/null 2>/tmp/nc.err & i=0;'
              ' while [ $i -lt 100 ] && kill -0 $! 2>/dev/null; do'
              '   cat /proc/net/tcp /proc/net/tcp6 | grep -q -E ":0050 [0-9A-F]+:0000 0A" && break;'
              '   sleep 0.02; i=$((i+1)); done;'
              ' cat /proc/net/tcp /proc/net/tcp6 | grep -q -E ":0050 [0-9A-F]+:0000 0A"'
              ' && echo bind80=ok || echo bind80=denied;'
              ' echo "ncerr=$(cat /tmp/nc.err)"; kill $! 2>/dev/null; true')
    for name, (user, caps, nnp, acts) in CAP_CASES.items():
        b = bundle(sh(script), root={"readonly": False},
                   process={"user": user, "capabilities": caps, "noNewPrivileges": nnp})
        f = facts(rt.run_ok(b, f"caps-{name}"))
        shown = {k: int(f[k], 16) for k in ("CapBnd", "CapPrm", "CapEff", "CapInh", "CapAmb")}
        want = {"CapBnd": cap_mask(caps.get("bounding", [])),
                "CapPrm": cap_mask(caps.get("permitted", [])),
                "CapEff": cap_mask(caps.get("effective", [])),
                "CapInh": cap_mask(caps.get("inheritable", [])),
                "CapAmb": cap_mask(caps.get("ambient", []))}
        assert shown == want, name
        assert f["NoNewPrivs"] == str(int(nnp)), name
        assert (f["chown"], f["bind80"]) == (acts["chown"], acts["bind80"]), (name, f)
        if acts["bind80"] == "denied":
            assert "ermission denied" in f["ncerr"], f


# -- root, hostname, domainname ----------------------------------------------------------------

def test_readonly_root_hostname_domainname(rt, bundle):
    script = ('touch /x 2>/dev/null && echo touch=ok || echo touch=fail;'
              ' echo "hostname=$(hostname)"; echo "domain=$(cat /proc/sys/kernel/domainname)";'
              ' echo "rootopts=$(awk \'$5 == "/" {print $6}\' /proc/self/mountinfo)"')
    b = bundle(sh(script), hostname="probe-host", domainname="example.org",
               root={"readonly": True})
    f = facts(rt.run_ok(b, "root1"))
    assert f["touch"] == "fail"
    assert "ro" in f["rootopts"].split(",")
    assert f["hostname"] == "probe-host" and f["domain"] == "example.org"
    # root.path may be absolute (here: the bundle's own rootfs, by its full path).
    b = bundle(sh(script), root={"readonly": False})
    update_config(b, root={"path": str(b / "rootfs")})
    f = facts(rt.run_ok(b, "root2"))
    assert f["touch"] == "ok"
    assert (b / "rootfs/x").exists()
    assert f["hostname"] == "runc"
    assert os.uname().nodename != "probe-host"  # the host's name is untouched


# -- mounts ------------------------------------------------------------------------------------

@pytest.fixture
def host_tree(berth_env):
    """tmp/hostdir with a file and a tmpfs mounted at hostdir/sub (holding sub/inner), a host
    file, and a read-only source. Unmounted afterwards."""
    base = berth_env.tmp
    hostdir = base / "hostdir"
    (hostdir / "sub").mkdir(parents=True)
    (hostdir / "top").write_text("top\n")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "berth-h5-sub", str(hostdir / "sub")],
                   check=True)
    try:
        (hostdir / "sub/inner").write_text("inner\n")
        (base / "hostfile").write_text("hello from the host\n")
        (base / "rosrc").mkdir()
        (base / "rosrc/data").write_text("data\n")
        (base / "nxsrc").mkdir()
        (base / "nxsrc/prog").write_text("#!/bin/sh\necho ran\n")
        os.chmod(base / "nxsrc/prog", 0o755)
        yield base
    finally:
        subprocess.run(["umount", "-l", str(hostdir / "sub")], check=False)


def test_mounts(rt, bundle, host_tree):
    t = host_tree
    extra = [
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "size=1m", "mode=1770"]},
        {"destination": "/ro", "type": "bind", "source": str(t / "rosrc"),
         "options": ["bind", "ro"]},
        {"destination": "/nx", "type": "bind", "source": str(t / "nxsrc"),
         "options": ["bind", "nosuid", "nodev", "noexec"]},
        {"destination": "/b", "type": "bind", "source": str(t / "hostdir"), "options": ["bind"]},
        {"destination": "/rb", "type": "bind", "source": str(t / "hostdir"),
         "options": ["rbind", "ro"]},
        {"destination": "/rrb", "type": "bind", "source": str(t / "hostdir"),
         "options": ["rbind", "rro", "rnosuid"]},
        {"destination": "/etc/greeting", "type": "bind", "source": str(t / "hostfile"),
         "options": ["bind", "ro"]},
        {"destination": "/deep/er/path", "type": "tmpfs", "source": "tmpfs", "options": []},
    ]
    script = (
        'echo "scratchmode=$(stat -c %a /scratch)"; echo "scratchkb=$(df -k /scratch | tail -1'
        ' | tr -s " " | cut -d" " -f2)";'
        ' cat /ro/data >/dev/null && echo ro_read=ok;'
        ' touch /ro/new 2>/tmp_err || echo "ro_write=fail";'
        ' /nx/prog 2>/dev/null && echo nx=ran || echo nx=denied;'
        ' cat /nx/prog >/dev/null && echo nx_read=ok;'
        ' echo "b_top=$(cat /b/top)"; echo "b_sub=$(ls -A /b/sub | wc -l)";'
        ' echo "rb_inner=$(cat /rb/sub/inner)";'
        ' touch /rb/top 2>/dev/null && echo rb_write=ok || echo rb_write=fail;'
        ' touch /rrb/sub/x 2>/dev/null && echo rrb_sub_write=ok || echo rrb_sub_write=fail;'
        ' echo "greeting=$(cat /etc/greeting)"; [ -f /etc/greeting ] && echo greeting_file=yes;'
        ' [ -d /deep/er/path ] && echo deep=yes;'
        ' echo "proc1=$(cat /proc/1/comm)"; echo "sysnet=$(ls /sys/class/net | tr "\\n" " ")";'
        ' echo "cgroups=$(ls /sys/fs/cgroup | tr "\\n" " ")";'
        ' echo "memcg_procs=$(cat /sys/fs/cgroup/memory/cgroup.procs | tr "\\n" " ")";'
        ' touch /sys/fs/cgroup/memory/x 2>/dev/null && echo cg_write=ok || echo cg_write=fail;'
        ' echo ---mountinfo; cat /proc/self/mountinfo')
    b = bundle(sh(script), mounts=DEFAULT_MOUNTS + extra)
    out = rt.run_ok(b, "mnt1")
    f = facts(out)
    mi = mountinfo(section(out, "mountinfo"))
    # tmpfs with size and mode
    assert f["scratchmode"] == "1770" and f["scratchkb"] == "1024"
    assert mi["/scratch"]["fstype"] == "tmpfs"
    assert {"nosuid", "nodev"} <= set(mi["/scratch"]["opts"].split(","))
    assert {"size=1024k", "mode=1770"} <= set(mi["/scratch"]["super"].split(","))
    # bind ro: readable, not writable; host dir unchanged
    assert f["ro_read"] == "ok" and f["ro_write"] == "fail"
    assert "ro" in mi["/ro"]["opts"].split(",")
    assert not (t / "rosrc/new").exists()
    # nosuid,nodev,noexec
    assert {"nosuid", "nodev", "noexec"} <= set(mi["/nx"]["opts"].split(","))
    assert f["nx"] == "denied" and f["nx_read"] == "ok"
    # bind is not recursive: the tmpfs under hostdir/sub is not there; rbind brings it
    assert f["b_top"] == "top" and f["b_sub"] == "0"
    assert "/b/sub" not in mi
    assert f["rb_inner"] == "inner" and "/rb/sub" in mi
    assert mi["/rb/sub"]["fstype"] == "tmpfs"
    # "ro" makes the bind read-only (mount(8): the top mount only); "rro" and the other
    # recursive options (config.md, AT_RECURSIVE) reach every mount below it as well.
    assert f["rb_write"] == "fail" and "ro" in mi["/rb"]["opts"].split(",")
    assert f["rrb_sub_write"] == "fail"
    assert {"ro", "nosuid"} <= set(mi["/rrb"]["opts"].split(","))
    assert {"ro", "nosuid"} <= set(mi["/rrb/sub"]["opts"].split(","))
    assert not (t / "hostdir/sub/x").exists()
    # a single file
    assert f["greeting"] == "hello from the host" and f["greeting_file"] == "yes"
    assert f["deep"] == "yes"
    # proc, sysfs, devpts, mqueue, shm, cgroup from the default mounts
    assert mi["/proc"]["fstype"] == "proc" and f["proc1"] == "sh"
    assert mi["/sys"]["fstype"] == "sysfs" and "ro" in mi["/sys"]["opts"].split(",")
    assert f["sysnet"].split() == ["lo"]  # sysfs of the container's network namespace
    assert mi["/dev/pts"]["fstype"] == "devpts"
    assert {"ptmxmode=666", "mode=620", "gid=5"} <= set(mi["/dev/pts"]["super"].split(","))
    assert mi["/dev/mqueue"]["fstype"] == "mqueue"
    assert mi["/dev/shm"]["fstype"] == "tmpfs"
    assert {"nosuid", "nodev", "noexec"} <= set(mi["/dev/shm"]["opts"].split(","))
    assert mi["/dev"]["fstype"] == "tmpfs"
    # cgroup (v1 on this host): the container's own cgroups, read-only
    assert {"cpu", "memory", "pids", "devices"} <= set(f["cgroups"].split())
    assert mi["/sys/fs/cgroup/memory"]["root"] != "/"  # the container's cgroup, not the root
    assert "1" in f["memcg_procs"].split()
    assert f["cg_write"] == "fail"


def test_mount_targets_never_leave_the_rootfs(rt, bundle, berth_env):
    """A rootfs symlink pointing at a host path (absolute, or climbing with ..) is followed
    inside the rootfs only: the mount and the directories made for it land in the rootfs."""
    host = berth_env.tmp / "host-target"
    host.mkdir()
    b = bundle(sh('ls -d /abs/sub /climb/sub && echo inside=yes'), root={"readonly": False},
               mounts=DEFAULT_MOUNTS + [
                   {"destination": "/abs/sub", "type": "tmpfs", "source": "tmpfs"},
                   {"destination": "/climb/sub", "type": "tmpfs", "source": "tmpfs"}])
    os.symlink(str(host), b / "rootfs/abs")
    os.symlink("../" * 12 + str(host).lstrip("/"), b / "rootfs/climb")
    f = facts(rt.run_ok(b, "escape1"))
    assert f["inside"] == "yes"
    assert list(host.iterdir()) == []  # nothing made or mounted on the host
    assert (b / "rootfs" / str(host).lstrip("/") / "sub").is_dir()


def test_mount_propagation_options(rt, bundle, berth_env):
    """A host mount that appears under a shared source after start reaches an rslave bind and
    not an rprivate one; the mount table shows the propagation type of each."""
    src = berth_env.tmp / "prop"
    src.mkdir()
    subprocess.run(["mount", "--bind", str(src), str(src)], check=True)
    late = src / "late"
    try:
        subprocess.run(["mount", "--make-shared", str(src)], check=True)
        late.mkdir()
        mounts = DEFAULT_MOUNTS + [
            {"destination": "/pslave", "type": "bind", "source": str(src),
             "options": ["rbind", "rslave"]},
            {"destination": "/pprivate", "type": "bind", "source": str(src),
             "options": ["rbind", "rprivate"]},
            {"destination": "/pshared", "type": "tmpfs", "source": "tmpfs",
             "options": ["shared"]},
            {"destination": "/punbind", "type": "tmpfs", "source": "tmpfs",
             "options": ["unbindable"]},
        ]
        b = bundle(["sleep", "60"], mounts=mounts)
        rt("create", "--bundle", str(b), "prop1")
        rt("start", "prop1")
        subprocess.run(["mount", "-t", "tmpfs", "berth-h5-late", str(late)], check=True)
        (late / "marker").write_text("x")
        out = rt("exec", "prop1", "sh", "-c",
                 'echo "slave=$(ls /pslave/late)"; echo "private=$(ls /pprivate/late)";'
                 ' echo ---mountinfo; cat /proc/self/mountinfo').stdout
        rt("delete", "--force", "prop1")
    finally:
        subprocess.run(["umount", "-l", str(late)], check=False)
        subprocess.run(["umount", "-l", str(src)], check=False)
    f = facts(out)
    mi = mountinfo(section(out, "mountinfo"))
    assert f["slave"] == "marker" and f["private"] == ""
    assert "master:" in mi["/pslave"]["tags"] and "shared:" not in mi["/pslave"]["tags"]
    assert mi["/pprivate"]["tags"] == ""
    assert "shared:" in mi["/pshared"]["tags"]
    assert "unbindable" in mi["/punbind"]["tags"]


@pytest.mark.parametrize("prop,tag", [("shared", "shared:"), ("unbindable", "unbindable"),
                                      ("private", None)])
def test_rootfs_propagation(rt, bundle, prop, tag):
    b = bundle(["cat", "/proc/self/mountinfo"], linux={"rootfsPropagation": prop})
    root = mountinfo(rt.run_ok(b, f"rprop-{prop}"))["/"]
    if tag is None:
        assert root["tags"] == ""
    else:
        assert tag in root["tags"]


# -- namespaces --------------------------------------------------------------------------------

def _ns_script(kinds) -> str:
    return " ".join(f'echo "ns_{k}=$(readlink /proc/self/ns/{NS_FILE[k]})";' for k in kinds)


def test_new_namespaces_of_every_type(rt, bundle):
    kinds = ("pid", "network", "ipc", "uts", "mount", "cgroup", "time")
    script = (_ns_script(kinds) + ' echo "pid1=$$"; echo "loflags=$(cat /sys/class/net/lo/flags)";'
              ' echo "ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | tr "\\n" " ")";'
              ' echo ---cgroup; cat /proc/self/cgroup')
    b = bundle(sh(script), linux={"namespaces": [{"type": k} for k in kinds]})
    out = rt.run_ok(b, "ns1")
    f = facts(out)
    for k in kinds:
        assert f[f"ns_{k}"] != os.readlink(f"/proc/self/ns/{NS_FILE[k]}"), k
    assert f["pid1"] == "1"
    assert int(f["loflags"], 16) & 0x1, "loopback is not up"  # IFF_UP
    assert f["ifaces"].split() == ["lo"]
    cgroup_lines = section(out, "cgroup").strip().splitlines()
    assert cgroup_lines and all(line.endswith(":/") for line in cgroup_lines), cgroup_lines


def test_time_namespace_offsets(rt, bundle):
    b = bundle(["cat", "/proc/self/timens_offsets"], linux={
        "namespaces": [{"type": k} for k in ("pid", "mount", "uts", "time")],
        "timeOffsets": {"monotonic": {"secs": 86400}, "boottime": {"secs": 3600}}})
    offsets = {line.split()[0]: line.split()[1:] for line in
               rt.run_ok(b, "timens1").splitlines()}
    assert offsets["monotonic"] == ["86400", "0"]
    assert offsets["boottime"] == ["3600", "0"]


def test_namespaces_not_listed_are_the_hosts(rt, bundle):
    b = bundle(sh(_ns_script(HOST_ONLY_NS)), hostname=DELETE,
               linux={"namespaces": [{"type": "mount"}, {"type": "pid"}]})
    f = facts(rt.run_ok(b, "ns2"))
    for k in ("network", "ipc", "uts", "cgroup", "time"):
        assert f[f"ns_{k}"] == os.readlink(f"/proc/self/ns/{NS_FILE[k]}"), k
    for k in ("mount", "pid"):
        assert f[f"ns_{k}"] != os.readlink(f"/proc/self/ns/{NS_FILE[k]}"), k


def test_join_namespaces_by_path(rt, bundle):
    a = bundle(["sleep", "60"], hostname="alpha")
    rt("create", "--bundle", str(a), "nsA")
    rt("start", "nsA")
    pid = rt.state("nsA")["pid"]
    joined = ("network", "ipc", "uts")
    b = bundle(sh(_ns_script(("network", "ipc", "uts", "pid", "mount")) +
                  ' echo "hostname=$(hostname)"'),
               hostname=DELETE,
               linux={"namespaces": [{"type": "pid"}, {"type": "mount"}] + [
                   {"type": k, "path": f"/proc/{pid}/ns/{NS_FILE[k]}"} for k in joined]})
    f = facts(rt.run_ok(b, "nsB"))
    for k in joined:
        assert f[f"ns_{k}"] == os.readlink(f"/proc/{pid}/ns/{NS_FILE[k]}"), k
    for k in ("pid", "mount"):
        assert f[f"ns_{k}"] != os.readlink(f"/proc/{pid}/ns/{NS_FILE[k]}"), k
    assert f["hostname"] == "alpha"
    rt("delete", "--force", "nsA")


def test_user_namespace_with_mappings(rt, bundle, berth_env):
    script = ('echo "id=$(id -u):$(id -g)"; echo "uidmap=$(cat /proc/self/uid_map | tr -s " ")";'
              ' echo "gidmap=$(cat /proc/self/gid_map | tr -s " ")";'
              ' echo "owner=$(stat -c %u:%g /bin/busybox)";'
              ' echo "ns_user=$(readlink /proc/self/ns/user)";'
              ' echo "null=$(stat -c %t:%T /dev/null)"; sleep 60')
    b = bundle(sh(script), linux={
        "namespaces": [{"type": k} for k in ("pid", "network", "ipc", "uts", "mount", "user")],
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]})
    subprocess.run(["chown", "-R", "-h", "100000:100000", str(b / "rootfs")], check=True)
    # The mapped root must be able to reach its rootfs: no 0700 directory on the way (pytest's
    # tmp dirs are 0700). Their modes are put back at the end.
    modes = {d: os.stat(d).st_mode & 0o7777 for d in [b, *b.parents] if d != Path("/")}
    try:
        for d, mode in modes.items():
            os.chmod(d, mode | 0o011)
        _run_userns_probe(rt, b, berth_env)
    finally:
        for d, mode in modes.items():
            os.chmod(d, mode)


def _run_userns_probe(rt, b, berth_env):
    # The container keeps create's stdout: a file the test reads while the container runs.
    out_file = berth_env.tmp / "userns.out"
    with open(out_file, "w") as out, open(berth_env.tmp / "userns.err", "w+") as err:
        code = subprocess.run([str(rt.exe), "--root", str(rt.root), "create", "--bundle",
                               str(b), "user1"], stdout=out, stderr=err,
                              stdin=subprocess.DEVNULL, timeout=30).returncode
        err.seek(0)
        assert code == 0, err.read()
    pid = rt.state("user1")["pid"]
    rt("start", "user1")
    deadline = time.monotonic() + 10
    while "null=" not in out_file.read_text():
        assert time.monotonic() < deadline, out_file.read_text()
        time.sleep(0.05)
    host_status = status_fields(Path(f"/proc/{pid}/status").read_text())
    f = facts(out_file.read_text())
    rt("delete", "--force", "user1")
    assert f["id"] == "0:0"
    assert f["uidmap"].split() == ["0", "100000", "65536"]
    assert f["gidmap"].split() == ["0", "100000", "65536"]
    assert f["owner"] == "0:0"
    assert f["ns_user"] != os.readlink("/proc/self/ns/user")
    assert f["null"] == "1:3"
    assert host_status["Uid"].split() == ["100000"] * 4
    assert host_status["Gid"].split() == ["100000"] * 4


# -- devices ------------------------------------------------------------------------------------

def test_devices_from_the_spec_and_the_default_set(rt, bundle):
    script = (
        'for d in null zero full random urandom tty sub/mynull myblk myfifo; do'
        ' echo "dev_$d=$(stat -c "%F|%t:%T|%a|%u:%g" /dev/$d)"; done;'
        ' for l in ptmx fd stdin stdout stderr; do echo "link_$l=$(readlink /dev/$l)"; done;'
        ' echo "zero=$(head -c 4 /dev/zero | od -An -tx1 | tr -d " ")";'
        ' echo x > /dev/full 2>/tmp_e || echo full=ENOSPC;'
        ' echo hi > /dev/sub/mynull && echo mynull_write=ok;'
        ' echo "urandom=$(head -c 16 /dev/urandom | wc -c)"')
    devices = [
        {"path": "/dev/sub/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o662,
         "uid": 1000, "gid": 1000},
        {"path": "/dev/myblk", "type": "b", "major": 7, "minor": 200, "fileMode": 0o600,
         "uid": 0, "gid": 6},
        {"path": "/dev/myfifo", "type": "p", "fileMode": 0o620},
    ]
    f = facts(rt.run_ok(bundle(sh(script), linux={"devices": devices}), "dev1"))
    assert f["dev_null"] == "character special file|1:3|666|0:0"
    assert f["dev_zero"] == "character special file|1:5|666|0:0"
    assert f["dev_full"] == "character special file|1:7|666|0:0"
    assert f["dev_random"] == "character special file|1:8|666|0:0"
    assert f["dev_urandom"] == "character special file|1:9|666|0:0"
    assert f["dev_tty"] == "character special file|5:0|666|0:0"
    assert f["dev_sub/mynull"] == "character special file|1:3|662|1000:1000"
    assert f["dev_myblk"] == "block special file|7:c8|600|0:6"  # stat prints hex
    assert f["dev_myfifo"].split("|")[0] == "fifo" and f["dev_myfifo"].endswith("|620|0:0")
    assert f["link_ptmx"] == "pts/ptmx"
    assert f["link_fd"] == "/proc/self/fd"
    assert (f["link_stdin"], f["link_stdout"], f["link_stderr"]) == (
        "/proc/self/fd/0", "/proc/self/fd/1", "/proc/self/fd/2")
    assert f["zero"] == "00000000"
    assert f["full"] == "ENOSPC"
    assert f["mynull_write"] == "ok"
    assert f["urandom"] == "16"


def test_device_cgroup_rules(rt, bundle):
    """linux.resources.devices: the default config denies every device (the runtime then
    allows its default set); an allow rule with access "r" for a block device (an unbound
    loop device, which the host itself can open) lets the container open a node it makes for
    it for reading, but not for writing; a neighbour without a rule stays denied."""
    os.close(os.open("/dev/loop0", os.O_RDONLY))  # the host may: any EPERM below is the cgroup
    caps = ["CAP_MKNOD", "CAP_DAC_OVERRIDE"]
    script = ('mknod /dev/lp0 b 7 0 && echo mknod=ok;'
              ' dd if=/dev/lp0 of=/dev/null bs=512 count=1 2>/dev/null; echo "read=$?";'
              ' (true > /dev/lp0) 2>/tmp/err; echo "write_err=$(cat /tmp/err)";'
              ' mknod /dev/lp1 b 7 1 && echo mknod_other=ok;'
              ' dd if=/dev/lp1 of=/dev/null count=1 2>/tmp/err; echo "other_err=$(cat /tmp/err)"')
    b = bundle(sh(script), root={"readonly": False},
               process={"capabilities": {k: caps for k in ("bounding", "effective", "permitted")}},
               linux={"resources": {"devices": [
                   {"allow": False, "access": "rwm"},
                   {"allow": True, "type": "b", "major": 7, "minor": 0, "access": "r"}]}})
    f = facts(rt.run_ok(b, "devcg1"))
    assert f["mknod"] == "ok" and f["mknod_other"] == "ok"  # "b *:* m" is a default rule
    assert f["read"] == "0"
    assert "Operation not permitted" in f["write_err"]
    assert "Operation not permitted" in f["other_err"]


# -- sysctl, masked and read-only paths -------------------------------------------------------

def test_namespaced_sysctls(rt, bundle):
    host = {k: Path(f"/proc/sys/{k}").read_text() for k in ("net/ipv4/ip_forward",
                                                             "kernel/shmmax")}
    b = bundle(sh('echo "fwd=$(cat /proc/sys/net/ipv4/ip_forward)";'
                  ' echo "shmmax=$(cat /proc/sys/kernel/shmmax)";'
                  ' echo "ping=$(cat /proc/sys/net/ipv4/ping_group_range | tr -s "\\t " " ")"'),
               linux={"sysctl": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1234567",
                                 "net.ipv4.ping_group_range": "0 1000"}})
    f = facts(rt.run_ok(b, "sysctl1"))
    assert f["fwd"] == "1" and f["shmmax"] == "1234567" and f["ping"] == "0 1000"
    for k, v in host.items():
        assert Path(f"/proc/sys/{k}").read_text() == v, f"the host's {k} changed"


def test_host_wide_sysctl_is_rejected(rt, bundle):
    before = Path("/proc/sys/vm/swappiness").read_text()
    b = bundle(["true"], linux={"sysctl": {"vm.swappiness": "1"}})
    proc = rt("create", "--bundle", str(b), "sysctl2", check=False)
    assert proc.returncode != 0
    assert "linux.sysctl.vm.swappiness" in proc.stderr
    assert Path("/proc/sys/vm/swappiness").read_text() == before
    assert_nothing_left(rt, "sysctl2", b)


def test_net_sysctl_without_a_network_namespace_is_rejected(rt, bundle):
    b = bundle(["true"], linux={"sysctl": {"net.ipv4.ip_forward": "1"},
                                "namespaces": [{"type": "mount"}, {"type": "pid"},
                                               {"type": "uts"}]})
    proc = rt("create", "--bundle", str(b), "sysctl3", check=False)
    assert proc.returncode != 0 and "linux.sysctl.net.ipv4.ip_forward" in proc.stderr
    assert_nothing_left(rt, "sysctl3", b)


def test_masked_and_readonly_paths(rt, bundle):
    script = (
        'echo "secret=$(wc -c < /etc/secret)"; echo "dir=$(ls -A /opt/secretdir | wc -l)";'
        ' echo "dirfs=$(stat -f -c %T /opt/secretdir)";'
        ' touch /opt/secretdir/x 2>/dev/null && echo dir_write=ok || echo dir_write=fail;'
        ' echo "timer_list=$(wc -c < /proc/timer_list)";'
        ' touch /data/x 2>/tmp/err; echo "data_err=$(cat /tmp/err)";'
        ' cat /data/keep >/dev/null && echo data_read=ok;'
        ' (echo x > /proc/sys/kernel/domainname) 2>/tmp/err2; echo "procsys_err=$(cat /tmp/err2)";'
        ' touch /tmp/ok && echo tmp_write=ok')
    b = bundle(sh(script), root={"readonly": False}, linux={
        "maskedPaths": ["/etc/secret", "/opt/secretdir", "/proc/timer_list", "/does/not/exist"],
        "readonlyPaths": ["/data", "/proc/sys", "/does/not/exist/either"]})
    r = b / "rootfs"
    (r / "etc/secret").write_text("TOPSECRET\n")
    (r / "opt/secretdir").mkdir(parents=True)
    (r / "opt/secretdir/file").write_text("hidden\n")
    (r / "data").mkdir()
    (r / "data/keep").write_text("keep\n")
    f = facts(rt.run_ok(b, "mask1"))
    assert f["secret"] == "0"
    assert f["dir"] == "0" and f["dirfs"] == "tmpfs" and f["dir_write"] == "fail"
    assert f["timer_list"] == "0"
    assert "Read-only file system" in f["data_err"] and f["data_read"] == "ok"
    assert "Read-only file system" in f["procsys_err"]
    assert f["tmp_write"] == "ok"
    assert (r / "etc/secret").read_text() == "TOPSECRET\n"  # masked, not changed
    assert not (r / "does").exists()


# -- hooks -------------------------------------------------------------------------------------

def _hook(name: str, out_dir: str, path: str = "/bin/sh", **extra):
    # $0 is the directory the hook writes to; the state arrives on stdin.
    return {"path": path, "args": ["sh", "-c", f'cat > "$0/{name}.json"; echo "{name} $HOOKVAR"'
                                                f' >> "$0/order"', out_dir],
            "env": ["HOOKVAR=v", "PATH=/usr/bin:/bin"], **extra}


HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
              "poststop")


def test_hooks_run_in_order_with_the_state(rt, bundle, berth_env):
    log = berth_env.tmp / "hooks"
    log.mkdir()
    hooks = {k: [_hook(k, str(log))] for k in HOOK_KINDS}
    # startContainer runs in the container after pivot_root: its path and files are the
    # container's, so the log directory is bound into it.
    hooks["startContainer"] = [_hook("startContainer", "/hooklog")]
    b = bundle(sh('echo "process v" >> /hooklog/order'), hooks=hooks,
               mounts=DEFAULT_MOUNTS + [{"destination": "/hooklog", "type": "bind",
                                         "source": str(log), "options": ["bind"]}])
    rt("create", "--bundle", str(b), "hook1")
    pid = rt.state("hook1")["pid"]
    assert (log / "order").read_text().split("\n")[:-1] == [
        "prestart v", "createRuntime v", "createContainer v"]
    rt("start", "hook1")
    rt.wait_status("hook1", "stopped")
    rt("delete", "hook1")
    order = [line.split()[0] for line in (log / "order").read_text().splitlines()]
    hooks_only = [o for o in order if o != "process"]
    assert hooks_only == list(HOOK_KINDS)
    assert order.index("startContainer") < order.index("process")
    states = {k: json.loads((log / f"{k}.json").read_text()) for k in HOOK_KINDS}
    for kind in ("prestart", "createRuntime", "poststart", "poststop"):
        st = states[kind]
        assert st["id"] == "hook1", kind
        assert st["bundle"] == str(b), kind
        assert st["ociVersion"], kind
    # Runtime-namespace hooks see the pid as the host does.
    for kind in ("prestart", "createRuntime", "poststart"):
        assert states[kind]["pid"] == pid, kind
    assert states["prestart"]["status"] == states["createRuntime"]["status"] == "creating"
    assert states["createContainer"]["status"] == "creating"
    assert states["startContainer"]["status"] == "created"
    assert states["poststart"]["status"] == "running"
    assert states["poststop"]["status"] == "stopped"
    # Container-namespace hooks see the pid as the container does: 1 in its pid namespace.
    assert states["createContainer"]["pid"] == states["startContainer"]["pid"] == 1


def test_container_namespace_hooks_get_the_full_state(rt, bundle, berth_env):
    log = berth_env.tmp / "hooks"
    log.mkdir()
    b = bundle(["true"], hooks={"createContainer": [_hook("createContainer", str(log))],
                                "startContainer": [_hook("startContainer", "/hooklog")]},
               mounts=DEFAULT_MOUNTS + [{"destination": "/hooklog", "type": "bind",
                                         "source": str(log), "options": ["bind"]}])
    rt("create", "--bundle", str(b), "hook2")
    rt("start", "hook2")
    rt.wait_status("hook2", "stopped")
    rt("delete", "hook2")
    for kind in ("createContainer", "startContainer"):
        st = json.loads((log / f"{kind}.json").read_text())
        assert st.get("id") == "hook2", (kind, st)
        assert st.get("bundle") == str(b), (kind, st)


def test_failing_prestart_hook_fails_create_and_leaves_nothing(rt, bundle, berth_env):
    b = bundle(["true"], hooks={"prestart": [
        {"path": "/bin/sh", "args": ["sh", "-c", "echo hook-said-no >&2; exit 3"]}]})
    proc = rt("create", "--bundle", str(b), "hookfail1", check=False)
    assert proc.returncode != 0
    assert "hooks.prestart[0]" in proc.stderr and "hook-said-no" in proc.stderr
    assert "3" in proc.stderr
    assert_nothing_left(rt, "hookfail1", b)


def test_failing_poststart_hook_fails_start_and_stops_the_container(rt, bundle):
    b = bundle(["sleep", "30"], hooks={"poststart": [
        {"path": "/bin/sh", "args": ["sh", "-c", "echo post-said-no >&2; exit 4"]}]})
    rt("create", "--bundle", str(b), "hookfail2")
    proc = rt("start", "hookfail2", check=False)
    status = rt.status("hookfail2")
    rt("delete", "--force", "hookfail2")
    assert "hooks.poststart[0]" in proc.stderr and "post-said-no" in proc.stderr
    assert proc.returncode != 0
    assert status == "stopped"


def test_hook_timeout(rt, bundle):
    b = bundle(["true"], hooks={"createRuntime": [
        {"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]})
    t0 = time.monotonic()
    proc = rt("create", "--bundle", str(b), "hooktime1", check=False)
    took = time.monotonic() - t0
    assert proc.returncode != 0
    assert "hooks.createRuntime[0]" in proc.stderr and "timed out" in proc.stderr
    assert took < 10
    assert_nothing_left(rt, "hooktime1", b)
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p) == "sleep 30"]


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


# -- LSM profiles on a host without AppArmor or SELinux ---------------------------------------

def test_lsm_profiles_are_skipped_with_a_warning(rt, bundle):
    assert not Path("/sys/module/apparmor/parameters/enabled").exists() or \
        Path("/sys/module/apparmor/parameters/enabled").read_text().strip() != "Y"
    b = bundle(["true"], process={"apparmorProfile": "berth-h5-profile",
                                  "selinuxLabel": "system_u:system_r:container_t:s0:c1,c2"})
    proc = rt("create", "--bundle", str(b), "lsm1")
    assert "berth-h5-profile" in proc.stderr and "AppArmor" in proc.stderr
    assert "system_u:system_r:container_t:s0:c1,c2" in proc.stderr
    assert "warning" in proc.stderr.lower()
    rt("start", "lsm1")
    rt.wait_status("lsm1", "stopped")
    rt("delete", "lsm1")


def test_exec_with_a_terminal_through_console_socket(rt, bundle, berth_env):
    """exec --tty: a second pty of the container's devpts, handed over the console socket;
    the process leads its session with the pty as its controlling terminal."""
    rt("create", "--bundle", str(bundle(["sleep", "60"])), "tty2")
    rt("start", "tty2")
    srv = ConsoleServer(berth_env.tmp / "exec-console.sock")
    try:
        rt("exec", "--tty", "--console-socket", str(srv.path), "tty2", "sh", "-c",
           'echo "tty=$(tty)"; [ -t 1 ] && echo out_tty=yes; echo "sid=$(cut -d" " -f6 /proc/self/stat)"; '
           'echo "pid=$$"')
        out = srv.wait()
    finally:
        srv.close()
        rt("delete", "--force", "tty2")
    f = facts(out)
    assert f["tty"].startswith("/dev/pts/") and f.get("out_tty") == "yes"
    assert f["sid"] == f["pid"]
