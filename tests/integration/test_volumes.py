"""Volumes through the CLI on the real kernel: named volumes keeping data across containers,
copy-up from the image's VOLUME directories, anonymous volumes (VOLUME, `-v /path`) and who
removes them (`rm -v`, `run --rm`), `volume ls/inspect/rm/prune`, tmpfs- and bind-typed local
volumes, and hostile names and paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.rootfs import make_rootfs_tar

TYPE_CHECKING = False
if TYPE_CHECKING:
    from conftest import BerthEnv


def berth(*args: str, check: bool = True, input: str | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "berth.cli.main", *args], capture_output=True,
                       text=True, timeout=timeout, input=input)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def names() -> list[str]:
    return berth("volume", "ls", "-q").stdout.split()


@pytest.fixture
def image(berth_env: BerthEnv, rootfs: Path) -> str:
    """busybox with files in /data (owner 1000, mode 0640, a link, a subdirectory) and
    `VOLUME /data`."""
    (rootfs / "data" / "sub").mkdir(parents=True)
    hello = rootfs / "data" / "hello"
    hello.write_text("hello\n")
    os.chown(hello, 1000, 1000)
    hello.chmod(0o640)
    (rootfs / "data" / "sub" / "x").write_text("x\n")
    os.symlink("hello", rootfs / "data" / "link")
    (rootfs / "etc" / "marker").write_text("inside the image\n")
    tar = make_rootfs_tar(berth_env.tmp / "rootfs.tar", rootfs)
    berth("import", "-c", 'CMD ["sh"]', "-c", "VOLUME /data", str(tar), "vol:test")
    berth("import", "-c", 'CMD ["sh"]', str(tar), "plain:test")
    yield "vol:test"
    ids = berth("ps", "-aq", check=False).stdout.split()
    if ids:
        berth("rm", "-f", "-v", *ids, check=False)


def test_named_volume_keeps_data_across_containers(image: str, berth_env: BerthEnv) -> None:
    berth("run", "--rm", "-v", "keep:/store", "plain:test", "sh", "-c",
          "echo persisted > /store/f")
    assert names() == ["keep"]  # created on first use, as docker does
    r = berth("run", "--rm", "-v", "keep:/store:ro", "plain:test", "sh", "-c",
              "cat /store/f; echo no > /store/g", check=False)
    assert r.stdout == "persisted\n" and "Read-only file system" in r.stderr
    doc = json.loads(berth("volume", "inspect", "keep").stdout)[0]
    assert list(doc) == ["CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options",
                         "Scope"]
    assert doc["Mountpoint"] == str(berth_env.root / "volumes" / "keep" / "_data")
    assert (doc["Driver"], doc["Scope"], doc["Labels"], doc["Options"]) == (
        "local", "local", None, None)
    assert Path(doc["Mountpoint"], "f").read_text() == "persisted\n"
    from berth.store.db import Database
    with Database(berth_env.root) as db:  # recorded when the container exited, for df
        assert db.read("SELECT size, anonymous FROM volumes WHERE name = 'keep'") == [(10, 0)]
        actions = [e.action for e in db.events() if e.type == "volume"]
    assert actions[:3] == ["create", "mount", "unmount"]


def test_copy_up_from_the_image_and_rm_v(image: str) -> None:
    r = berth("run", "--name", "c1", image, "sh", "-c",
              "ls -ln /data/hello; readlink /data/link; cat /data/sub/x; echo new > /data/n")
    perms, _, uid, gid = r.stdout.split()[:4]
    assert (perms, uid, gid) == ("-rw-r-----", "1000", "1000")
    assert r.stdout.splitlines()[1:] == ["hello", "x"]
    [anon] = names()
    assert len(anon) == 64
    mounts = json.loads(berth("container", "inspect", "-f", "{{json .Mounts}}", "c1").stdout)
    assert [(m["Type"], m["Name"], m["Destination"], m["RW"]) for m in mounts] == [
        ("volume", anon, "/data", True)]
    labels = json.loads(berth("volume", "inspect", anon).stdout)[0]["Labels"]
    assert labels == {"com.docker.volume.anonymous": ""}
    berth("start", "-a", "c1", check=False)  # a second start copies nothing over the data
    berth("wait", "c1")
    berth("rm", "c1")  # without -v the anonymous volume stays, dangling
    assert berth("volume", "ls", "-q", "-f", "dangling=true").stdout.split() == [anon]
    berth("run", "--name", "c2", "-v", f"{anon}:/data", "plain:test", "true")
    assert berth("run", "--rm", "-v", f"{anon}:/d", "plain:test", "cat", "/d/n").stdout == \
        "new\n"
    assert berth("rm", "-v", "c2").stdout == "c2\n"
    assert names() == [anon]  # mounted by its name, it is not c2's to remove (docker's rule)
    berth("volume", "rm", anon)


def test_nocopy_and_non_empty_volume_are_not_filled(image: str) -> None:
    berth("run", "--rm", "--mount", "type=volume,source=nc,target=/data,volume-nocopy",
          "plain:test", "true")
    berth("run", "--rm", "-v", "keep2:/data", image, "true")  # filled from the image
    berth("run", "--rm", "-v", "keep2:/x", "plain:test", "rm", "/x/hello")
    assert berth("run", "--rm", "-v", "nc:/data:nocopy", "-v", "empty:/e:nocopy", image, "ls",
                 "-A", "/data", "/e").stdout.split() == ["/data:", "/e:"]
    # not empty any more: a new container of the image does not copy into it again
    assert "hello" not in berth("run", "--rm", "-v", "keep2:/data", image, "ls",
                                "/data").stdout
    berth("volume", "rm", "nc", "keep2", "empty")


def test_anonymous_volumes_go_with_rm_v_and_run_rm_only(image: str) -> None:
    berth("run", "--rm", "-v", "/scratch", "-v", "named:/n", image, "true")
    assert names() == ["named"]  # --rm removed the two anonymous ones (-v /scratch, /data)
    berth("create", "--name", "cc", "-v", "/scratch", "-v", "named:/n", image)
    assert len(names()) == 3
    berth("rm", "cc")
    assert len(names()) == 3
    out = berth("volume", "prune", "-f").stdout
    lines = out.splitlines()
    assert lines[0] == "Deleted Volumes:" and len(lines[1]) == 64 and len(lines[2]) == 64
    assert lines[3:] == ["", "Total reclaimed space: 0B"]
    assert names() == ["named"]
    berth("create", "--name", "cc", "-v", "/scratch", "-v", "named:/n", image)
    berth("rm", "-v", "cc")
    assert names() == ["named"]


def test_volume_rm_refused_while_used(image: str) -> None:
    cid = berth("create", "-v", "used:/u", "plain:test", "true").stdout.strip()
    r = berth("volume", "rm", "used", check=False)
    assert r.returncode == 1
    assert r.stderr == f"Error: remove used: volume is in use - [{cid}]\n"
    r = berth("volume", "rm", "-f", "used", check=False)  # force does not take it from under
    assert r.returncode == 1 and "volume is in use" in r.stderr
    r = berth("volume", "rm", "nosuch", check=False)
    assert (r.returncode, r.stderr) == (1, "Error: get nosuch: no such volume\n")
    assert berth("volume", "rm", "-f", "nosuch").stdout == "nosuch\n"
    berth("rm", cid)
    assert berth("volume", "rm", "used").stdout == "used\n"
    assert names() == []


def test_ls_filters_and_format(image: str) -> None:
    berth("volume", "create", "--label", "tier=db", "--label", "x", "vol10")
    berth("volume", "create", "vol9")
    anon = berth("volume", "create").stdout.strip()
    assert len(anon) == 64
    berth("create", "--name", "user", "-v", "vol10:/v", "plain:test")
    out = berth("volume", "ls").stdout.splitlines()
    assert out[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert [ln.split() for ln in out[1:]] == [["local", anon], ["local", "vol9"],
                                              ["local", "vol10"]]  # natural order
    ls = lambda *f: berth("volume", "ls", "-q", *f).stdout.split()  # noqa: E731
    assert ls("-f", "dangling=true") == [anon, "vol9"]
    assert ls("--filter", "dangling=false") == ["vol10"]
    assert ls("-f", "label=tier=db") == ls("-f", "label=x") == ["vol10"]
    assert ls("-f", "label=tier=web") == []
    assert ls("-f", "name=^vol1") == ["vol10"]
    assert ls("-f", "driver=local", "-f", "name=vol") == ["vol9", "vol10"]
    assert berth("volume", "ls", "--format", "{{.Name}}|{{.Labels}}|{{.Scope}}",
                 "-f", "name=vol").stdout == "vol9||local\nvol10|tier=db,x=|local\n"
    r = berth("volume", "ls", "-f", "until=1h", check=False)
    assert (r.returncode, r.stderr) == (1, "Error: invalid filter 'until'\n")
    r = berth("volume", "ls", "-f", "dangling=maybe", check=False)
    assert r.returncode == 1 and "dangling=maybe" in r.stderr
    berth("rm", "user")
    berth("volume", "rm", "vol9", "vol10", anon)


def test_prune(image: str, berth_env: BerthEnv) -> None:
    berth("volume", "create", "--label", "keep=yes", "named1")
    berth("volume", "create", "named2")
    anon = berth("volume", "create").stdout.strip()
    berth("run", "--rm", "-v", f"{anon}:/a", "plain:test", "sh", "-c",
          "head -c 1500 /dev/zero > /a/f")
    r = berth("volume", "prune", "-f", "--filter", "until=24h", check=False)
    assert (r.returncode, r.stderr) == (1, "Error: invalid filter 'until'\n")
    r = berth("volume", "prune", input="n\n")
    assert r.stdout == ("WARNING! This will remove anonymous local volumes not used by at "
                        "least one container.\nAre you sure you want to continue? [y/N] ")
    assert len(names()) == 3
    dry = berth("volume", "prune", "--dry-run", "-a").stdout
    assert dry.splitlines() == ["Would remove:", f"{anon}\t1.5kB", "named1\t0B", "named2\t0B",
                                "", "Total reclaimable space: 1.5kB"]
    assert len(names()) == 3
    assert berth("volume", "prune", input="y\n").stdout.endswith(
        f"[y/N] Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 1.5kB\n")
    assert berth("volume", "prune", "-f").stdout == "Total reclaimed space: 0B\n"
    assert berth("volume", "prune", "-af", "--filter", "label!=keep").stdout == \
        "Deleted Volumes:\nnamed2\n\nTotal reclaimed space: 0B\n"
    assert berth("volume", "prune", "-a", "-f", "--filter", "label=keep=yes").stdout == \
        "Deleted Volumes:\nnamed1\n\nTotal reclaimed space: 0B\n"
    assert names() == [] and os.listdir(berth_env.root / "volumes") == []


def test_tmpfs_volume_is_mounted_while_used(image: str, berth_env: BerthEnv) -> None:
    berth("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o",
          "o=size=2m,mode=1770", "tv")
    data = berth_env.root / "volumes" / "tv" / "_data"
    cid = berth("run", "-d", "-v", "tv:/t", "plain:test", "sh", "-c",
                "echo x > /t/f; sleep 30").stdout.strip()
    out = berth("exec", cid, "sh", "-c", "grep ' /t ' /proc/mounts").stdout
    assert out.startswith("tmpfs /t tmpfs ") and "size=2048k" in out and "mode=1770" in out
    assert berth("run", "--rm", "-v", "tv:/shared", "plain:test", "cat",
                 "/shared/f").stdout == "x\n"  # two containers, one tmpfs
    assert (data / "f").exists()  # still mounted: the first container runs
    berth("rm", "-f", cid)
    assert not (data / "f").exists() and data.is_dir()
    doc = json.loads(berth("volume", "inspect", "tv").stdout)[0]
    assert doc["Options"] == {"device": "tmpfs", "o": "size=2m,mode=1770", "type": "tmpfs"}
    # prune leaves volumes with mount options alone, as docker's does
    assert berth("volume", "prune", "-af").stdout == "Total reclaimed space: 0B\n"
    berth("volume", "rm", "tv")


def test_bind_volume_and_its_removal_keeps_the_host_dir(image: str,
                                                         berth_env: BerthEnv) -> None:
    host = berth_env.tmp / "host"
    host.mkdir()
    (host / "file").write_text("from the host\n")
    r = berth("volume", "create", "-o", "type=none", "-o", f"device={host}/missing", "-o",
              "o=bind", "bad", check=False)
    assert r.returncode == 1 and "does not exist" in r.stderr
    for opts, msg in ((["-o", "type=tmpfs"], 'missing required option: "device"'),
                      (["-o", "foo=1"], 'invalid option: "foo"'),
                      (["-o", "type=ext4", "-o", "device=/dev/null"], "type=ext4")):
        r = berth("volume", "create", *opts, "bad", check=False)
        assert r.returncode == 1 and msg in r.stderr, r.stderr
    berth("volume", "create", "-o", "type=none", "-o", f"device={host}", "-o", "o=bind", "bv")
    r = berth("run", "--rm", "-v", "bv:/b", "plain:test", "sh", "-c",
              "cat /b/file; echo from-container > /b/c")
    assert r.stdout == "from the host\n"
    assert (host / "c").read_text() == "from-container\n"
    berth("volume", "rm", "bv")
    assert sorted(os.listdir(host)) == ["c", "file"]
    assert names() == []


def test_bad_names_and_paths(image: str, berth_env: BerthEnv) -> None:
    for bad in ("a/b", "../etc", ".hidden", "x", "-v", "a b", "name*"):
        r = berth("volume", "create", "--", bad, check=False)
        assert r.returncode == 1, bad
        assert "volume name" in r.stderr, r.stderr
    r = berth("run", "--rm", "-v", "bad*name:/x", "plain:test", "true", check=False)
    assert r.returncode == 125 and "includes invalid characters" in r.stderr
    r = berth("run", "--rm", "-v", "v1:/x", "-v", "v2:/x", "plain:test", "true", check=False)
    assert r.returncode == 125 and "Duplicate mount point: /x" in r.stderr
    r = berth("volume", "inspect", "../../etc", check=False)
    assert r.returncode == 1 and "no such volume" in r.stderr
    assert names() == [] and berth("ps", "-aq").stdout == ""
    assert not (berth_env.root / "volumes").exists() or \
        os.listdir(berth_env.root / "volumes") == []


def test_copy_up_stays_inside_the_container_root(berth_env: BerthEnv, rootfs: Path) -> None:
    """An image whose VOLUME is a symlink pointing out of its root: copy-up follows it inside
    the root, never into the host."""
    (rootfs / "etc" / "marker").write_text("inside the image\n")
    os.symlink("../../../../../../etc", rootfs / "data")
    tar = make_rootfs_tar(berth_env.tmp / "evil.tar", rootfs)
    berth("import", "-c", "VOLUME /data", str(tar), "evil:test")
    berth("run", "--name", "ev", "evil:test", "true")
    [anon] = names()
    data = berth_env.root / "volumes" / anon / "_data"
    assert (data / "marker").read_text() == "inside the image\n"
    assert sorted(os.listdir(data)) == sorted(os.listdir(rootfs / "etc"))
    berth("rm", "-v", "ev")
    assert names() == []


def test_copy_up_keeps_owners_modes_xattrs_links(berth_env: BerthEnv) -> None:
    from berth.engine.volumes import copy_up
    root = berth_env.tmp / "root_of_ctr"
    src = root / "srv"
    (src / "d").mkdir(parents=True)
    f = src / "d" / "f"
    f.write_bytes(b"data")
    os.chown(f, 1234, 5678)
    f.chmod(0o4751)
    os.setxattr(f, "user.note", b"kept")
    os.link(f, src / "hard")
    os.symlink("/etc/passwd", src / "abs")  # copied as a link, never followed
    os.mkfifo(src / "fifo", 0o600)
    src.chmod(0o710)
    os.chown(src, 7, 8)
    dest = berth_env.tmp / "vol"
    dest.mkdir()
    assert copy_up(str(root), "/srv", dest) is True
    st = os.lstat(dest / "d" / "f")
    assert (st.st_uid, st.st_gid, oct(st.st_mode & 0o7777)) == (1234, 5678, "0o4751")
    assert os.getxattr(dest / "d" / "f", "user.note") == b"kept"
    assert os.lstat(dest / "hard").st_ino == st.st_ino
    assert os.readlink(dest / "abs") == "/etc/passwd"
    assert oct(os.lstat(dest).st_mode & 0o7777) == "0o710" and os.lstat(dest).st_uid == 7
    assert copy_up(str(root), "/srv", dest) is False  # not empty any more
    with pytest.raises(Exception, match="cannot mount volume over existing file"):
        copy_up(str(root), "/srv/d/f", berth_env.tmp)
