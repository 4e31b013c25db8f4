"""Pure parts of the runtime: mount options, paths inside a root, signals, CLI grammar,
capability masks and the status state machine."""

from __future__ import annotations

import os
import signal

import pytest

from berth.errors import InvalidArgument, InvalidConfig
from berth.runtime import _sys
from berth.runtime.capabilities import mask, names_of
from berth.runtime.cli import UsageError, parse_args, parse_signal
from berth.runtime.mounts import parse_options, resolve_in_root
from berth.runtime.state import Status, check_id


def test_mount_options_to_flags_and_data():
    o = parse_options(["nosuid", "noexec", "nodev", "ro", "mode=755", "size=65536k"])
    assert o.flags == _sys.MS_NOSUID | _sys.MS_NOEXEC | _sys.MS_NODEV | _sys.MS_RDONLY
    assert o.data == "mode=755,size=65536k"
    assert not o.is_bind
    b = parse_options(["rbind", "ro", "rslave"])
    assert b.is_bind and b.flags & _sys.MS_REC
    assert b.propagation == (_sys.MS_SLAVE | _sys.MS_REC,)
    assert parse_options(["ro", "rw"]).flags & _sys.MS_RDONLY == 0
    with pytest.raises(InvalidConfig):
        parse_options(["idmap"])


def test_resolve_in_root_never_leaves_root(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/etc/passwd", root / "abs")          # absolute: means root/etc/passwd
    os.symlink("../../../../etc", root / "etc" / "up")  # climbs: stops at root
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    r = str(root)
    assert resolve_in_root(r, "/abs") == f"{r}/etc/passwd"
    assert resolve_in_root(r, "/etc/up/shadow") == f"{r}/etc/shadow"
    assert resolve_in_root(r, "/../../x") == f"{r}/x"
    assert resolve_in_root(r, "/new/dir/../file") == f"{r}/new/file"
    with pytest.raises(OSError):
        resolve_in_root(r, "/loop1")


@pytest.mark.parametrize("text, num", [("KILL", 9), ("SIGKILL", 9), ("9", 9), ("term", 15),
                                       ("SIGUSR1", int(signal.SIGUSR1)),
                                       ("RTMIN+1", int(signal.SIGRTMIN) + 1)])
def test_signal_spellings(text, num):
    assert parse_signal(text) == num


@pytest.mark.parametrize("text", ["NOPE", "0", "999", ""])
def test_bad_signals(text):
    with pytest.raises(InvalidArgument):
        parse_signal(text)


def test_cli_grammar_options_before_id():
    a = parse_args(["--root", "/r", "create", "--bundle", "/b", "--pid-file=/p", "c1"])
    assert a == {"root": "/r", "cmd": "create", "bundle": "/b", "pid_file": "/p", "id": "c1"}
    a = parse_args(["exec", "-t", "-e", "A=1", "-e", "B=2", "c1", "sh", "-c", "echo -n"])
    assert a["env"] == ["A=1", "B=2"] and a["command"] == ["sh", "-c", "echo -n"]
    assert parse_args(["kill", "c1"]).get("signal") is None
    assert parse_args(["kill", "c1", "KILL"])["signal"] == "KILL"
    for bad in (["create"], ["nosuch", "x"], ["create", "--bogus", "x"], ["state", "a", "b"],
                ["create", "--bundle"]):
        with pytest.raises(UsageError):
            parse_args(bad)


def test_capability_masks():
    assert mask(["CAP_KILL", "NET_BIND_SERVICE"], "f") == (1 << 5) | (1 << 10)
    assert names_of(1 << 21) == ["CAP_SYS_ADMIN"]
    with pytest.raises(InvalidConfig) as info:
        mask(["CAP_KILL", "CAP_FLY"], "process.capabilities.bounding")
    assert info.value.field == "process.capabilities.bounding[1]"


def test_status_transitions():
    assert Status.CREATED.can_start() and not Status.RUNNING.can_start()
    assert Status.STOPPED.can_delete() and not Status.RUNNING.can_delete()
    assert not Status.STOPPED.can_kill() and Status.PAUSED.can_kill()


@pytest.mark.parametrize("cid", ["", "../x", "a/b", "-x", "a" * 1025])
def test_bad_ids(cid):
    with pytest.raises(InvalidArgument):
        check_id(cid)
