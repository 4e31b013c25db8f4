"""`berth cp` on the real kernel: both directions, running and stopped containers, -a, -L,
tar streams on stdin/stdout, docker's directory/contents rules and errors, and hostile paths
and archives (container symlinks to / and ../.., `..` in paths, tars with absolute and `..`
names, hardlinks out): nothing may be written, or read, outside the container's root."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import tarfile
import time

from helpers import cli

TYPE_CHECKING = False
if TYPE_CHECKING:
    from conftest import BerthEnv


def berth(*args: str, check: bool = True, timeout: float = 60,
          input: bytes | None = None) -> subprocess.CompletedProcess:
    return cli.berth(*args, check=check, timeout=timeout, input=input, text=False)


def err(r: subprocess.CompletedProcess) -> str:
    return r.stderr.decode()


def running(image: str, name: str, script: str = "") -> str:
    cid = berth("run", "-d", "--name", name, image, "sh", "-c",
                f"{script or 'true'}; touch /tmp/ready; exec sleep 300").stdout.decode().strip()
    deadline = time.monotonic() + 10
    while berth("exec", name, "test", "-e", "/tmp/ready", check=False).returncode != 0:
        assert time.monotonic() < deadline, "container did not get ready"
        time.sleep(0.05)
    return cid


def out_of(name: str, *cmd: str) -> str:
    return berth("exec", name, *cmd).stdout.decode()


def events(env: BerthEnv, cid: str) -> list[str]:
    with sqlite3.connect(env.root / "berth.db") as db:
        return [r[0] for r in db.execute("SELECT action FROM events WHERE actor_id = ? "
                                         "ORDER BY id", (cid,))]


def test_copy_out_of_a_running_container(image: str, berth_env: BerthEnv) -> None:
    cid = running(image, "src", "mkdir -p /data/sub && echo one > /data/a && "
                  "echo two > /data/sub/b && ln -s a /data/link && chown -R 1000:1000 /data")
    dest = berth_env.tmp / "out"
    dest.mkdir()
    # a file to a new name, then into an existing directory under its own name
    berth("cp", "src:/data/a", str(dest / "renamed"))
    assert (dest / "renamed").read_text() == "one\n"
    berth("container", "cp", "src:/data/a", str(dest))
    assert (dest / "a").read_text() == "one\n"
    assert (dest / "a").stat().st_uid == os.getuid()  # without -a: the user running cp
    # a directory to a missing path: created, with the contents
    berth("cp", "src:/data", str(dest / "copy"))
    assert (dest / "copy/sub/b").read_text() == "two\n"
    assert os.readlink(dest / "copy/link") == "a"  # a symlink stays a symlink
    # a directory into an existing one: under its own name; with /. its contents
    berth("cp", "src:/data", str(dest))
    assert (dest / "data/sub/b").is_file()
    (dest / "flat").mkdir()
    berth("cp", "src:/data/.", str(dest / "flat"))
    assert sorted(os.listdir(dest / "flat")) == ["a", "link", "sub"]
    # -a keeps the container's owners
    berth("cp", "-a", "src:/data/sub", str(dest / "owned"))
    assert (dest / "owned/b").stat().st_uid == 1000
    # -L copies what a link points to, under the link's name
    berth("cp", "src:/data/link", str(dest / "nofollow"))
    assert os.path.islink(dest / "nofollow")
    berth("cp", "-L", "src:/data/link", str(dest / "followed"))
    assert not os.path.islink(dest / "followed")
    assert (dest / "followed").read_text() == "one\n"
    assert "archive-path" in events(berth_env, cid)


def test_copy_into_a_running_container(image: str, berth_env: BerthEnv) -> None:
    running(image, "dst")
    src = berth_env.tmp / "in"
    (src / "tree/deep").mkdir(parents=True)
    (src / "tree/deep/f").write_text("deep\n")
    (src / "file").write_text("hello\n")
    os.chown(src / "file", 1234, 5678)
    os.chmod(src / "file", 0o4750)  # after chown, which clears setuid
    berth("cp", str(src / "file"), "dst:/tmp/")
    assert out_of("dst", "cat", "/tmp/file") == "hello\n"
    # docker's documented rule: copied in without -a, root owns it; -a keeps the owner
    assert out_of("dst", "stat", "-c", "%u:%g %a", "/tmp/file") == "0:0 4750\n"
    berth("cp", "-a", str(src / "file"), "dst:/tmp/kept")
    assert out_of("dst", "stat", "-c", "%u:%g", "/tmp/kept") == "1234:5678\n"
    berth("cp", str(src / "tree"), "dst:/home/newdir")  # a missing destination: created
    assert out_of("dst", "cat", "/home/newdir/deep/f") == "deep\n"
    berth("cp", str(src / "tree") + "/.", "dst:/tmp")  # contents into an existing directory
    assert out_of("dst", "cat", "/tmp/deep/f") == "deep\n"
    berth("cp", str(src / "file"), "dst:/etc/hostname")  # onto a bind-mounted file's path?
    # (/etc/hostname is a bind mount: the copy reaches its source, as docker's does)
    assert out_of("dst", "cat", "/etc/hostname") == "hello\n"


def test_copy_into_a_stopped_container_lands_in_its_writable_layer(
        image: str, berth_env: BerthEnv) -> None:
    cid = berth("create", "--name", "later", image, "cat", "/etc/motd-berth",
                "/usr/new/x").stdout.decode().strip()
    src = berth_env.tmp / "motd"
    src.write_text("from the host\n")
    berth("cp", str(src), "later:/etc/motd-berth")
    tree = berth_env.tmp / "newtree"
    tree.mkdir()
    (tree / "x").write_text("x\n")
    berth("cp", str(tree), "later:/usr/new")
    upper = berth_env.root / "snapshots" / cid / "upper"
    assert (upper / "etc/motd-berth").read_text() == "from the host\n"
    assert (upper / "usr/new/x").read_text() == "x\n"
    assert not list((berth_env.root / "snapshots" / cid).glob("cp-*"))  # unmounted, removed
    # and out of a stopped container
    berth("cp", "later:/etc/motd-berth", str(berth_env.tmp / "back"))
    assert (berth_env.tmp / "back").read_text() == "from the host\n"
    berth("start", "later")
    assert berth("wait", "later").stdout == b"0\n"
    assert berth("logs", "later").stdout == b"from the host\nx\n"
    berth("cp", "later:/etc/motd-berth", str(berth_env.tmp / "after"))  # exited: works too
    assert events(berth_env, cid).count("extract-to-dir") == 2


def test_tar_streams(image: str, berth_env: BerthEnv) -> None:
    running(image, "tt", "mkdir -p /srv/d && echo s > /srv/d/f")
    r = berth("cp", "tt:/srv/d", "-")
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tar:
        names = tar.getnames()
        assert sorted(names) == ["d", "d/f"]
        member = tar.extractfile("d/f")
        assert member is not None and member.read() == b"s\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:  # compressed: read as docker does
        data = b"streamed\n"
        info = tarfile.TarInfo("in/streamed")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    berth("cp", "-", "tt:/srv", input=buf.getvalue())
    assert out_of("tt", "cat", "/srv/in/streamed") == "streamed\n"
    r = berth("cp", "-", "tt:/srv/d/f", input=buf.getvalue(), check=False)
    assert r.returncode == 1 and 'destination "tt:/srv/d/f" must be a directory' in err(r)


def test_docker_errors(image: str, berth_env: BerthEnv) -> None:
    running(image, "ee")
    f = berth_env.tmp / "f"
    f.write_text("f\n")
    d = berth_env.tmp / "d"
    d.mkdir()
    cases = [
        (("cp", "ee:/nonexistent", str(berth_env.tmp)), "No such container:path: ee:/nonexistent"),
        (("cp", str(f), "ee:/nonexistent/"), "no such directory"),
        (("cp", str(f), "ee:/no/such/dir/f"), "No such container:path: ee:/no/such/dir"),
        (("cp", str(d), "ee:/etc/passwd"), "cannot copy directory"),
        (("cp", "ee:/etc/passwd", str(berth_env.tmp / "nope/x")), "no such file or directory"),
        (("cp", str(berth_env.tmp / "missing"), "ee:/tmp"), "no such file or directory"),
        (("cp", "ee:/a", "ee:/b"), "copying between containers is not supported"),
        (("cp", str(f), str(d)), "must specify at least one container source"),
        (("cp", str(f), "nosuch:/tmp"), "No such container: nosuch"),
        (("cp", "ee:/etc/passwd/", str(d)), "not a directory"),
    ]
    for args, message in cases:
        r = berth(*args, check=False)
        assert r.returncode == 1 and message in err(r), (args, err(r))


def test_read_only_root_refuses_copies_in(image: str, berth_env: BerthEnv) -> None:
    berth("create", "--name", "ro", "--read-only", image, "true")
    f = berth_env.tmp / "f"
    f.write_text("f\n")
    r = berth("cp", str(f), "ro:/tmp/", check=False)
    assert r.returncode == 1 and "read-only" in err(r)
    berth("cp", "ro:/etc/passwd", str(berth_env.tmp / "p"))  # copies out still work


# --- hostile -----------------------------------------------------------------------------------

def test_container_symlinks_never_lead_outside(image: str, berth_env: BerthEnv) -> None:
    marker = f"berth-cp-escape-{os.getpid()}"
    running(image, "hh", "ln -s / /rootlink && ln -s ../../../../../../ /up && "
            "ln -s /etc /etclink && mkdir -p /tmp/a/b && ln -s ../../../../../tmp /tmp/a/b/t && "
            "echo container-passwd > /etc/passwd-marker")
    f = berth_env.tmp / "f"
    f.write_text("payload\n")
    for dest in (f"hh:/rootlink/tmp/{marker}", f"hh:/up/tmp/{marker}-2",
                 f"hh:/../../../../tmp/{marker}-3", f"hh:/tmp/a/b/t/{marker}-4",
                 f"hh:/etclink/{marker}-5"):
        berth("cp", str(f), dest)
    for name in (marker, f"{marker}-2", f"{marker}-3", f"{marker}-4"):
        assert not os.path.lexists(f"/tmp/{name}"), name
        assert out_of("hh", "cat", f"/tmp/{name}") == "payload\n"
    assert not os.path.lexists(f"/etc/{marker}-5")
    assert out_of("hh", "cat", f"/etc/{marker}-5") == "payload\n"
    # reading through the same links reads the container's files, never the host's
    berth("cp", "hh:/etclink/passwd-marker", str(berth_env.tmp / "pm"))
    assert (berth_env.tmp / "pm").read_text() == "container-passwd\n"
    berth("cp", "hh:/up/etc/passwd-marker", str(berth_env.tmp / "pm2"))
    assert (berth_env.tmp / "pm2").read_text() == "container-passwd\n"
    r = berth("cp", "hh:/../../../../etc/shadow", str(berth_env.tmp / "s"), check=False)
    assert r.returncode == 1 and "No such container:path" in err(r)  # busybox has none
    # a symlink copied out stays a symlink: it is not followed on the host
    berth("cp", "hh:/rootlink", str(berth_env.tmp / "rl"))
    assert os.readlink(berth_env.tmp / "rl") == "/"


def _tar(*members: tuple[str, str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                assert isinstance(data, bytes)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
                tar.addfile(info)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, str(data)
                tar.addfile(info)
            else:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
    return buf.getvalue()


def test_hostile_archives_stay_inside(image: str, berth_env: BerthEnv) -> None:
    marker = f"berth-tar-escape-{os.getpid()}"
    running(image, "xx", "mkdir /dst")
    # an absolute name lands inside the destination, as docker's extraction does
    berth("cp", "-", "xx:/dst", input=_tar((f"/tmp/{marker}-abs", "file", b"abs\n")))
    assert not os.path.lexists(f"/tmp/{marker}-abs")
    assert out_of("xx", "cat", f"/dst/tmp/{marker}-abs") == "abs\n"
    # `..` above the destination is refused
    r = berth("cp", "-", "xx:/dst", input=_tar((f"../../../../tmp/{marker}-dots", "file",
                                                b"x\n")), check=False)
    assert r.returncode == 1 and "outside of" in err(r)
    assert not os.path.lexists(f"/tmp/{marker}-dots")
    # a symlink in the archive, then a file through it: resolved inside the container
    berth("cp", "-", "xx:/dst", input=_tar(("l", "symlink", "/"),
                                           (f"l/tmp/{marker}-link", "file", b"link\n"),
                                           ("up", "symlink", "../../../../../.."),
                                           (f"up/tmp/{marker}-up", "file", b"up\n")))
    assert not os.path.lexists(f"/tmp/{marker}-link")
    assert not os.path.lexists(f"/tmp/{marker}-up")
    assert out_of("xx", "cat", f"/tmp/{marker}-link", f"/tmp/{marker}-up") == "link\nup\n"
    # a hardlink to a file outside the destination (or the container) is refused
    r = berth("cp", "-", "xx:/dst", input=_tar(("h", "hardlink", "../../../../etc/passwd")),
              check=False)
    assert r.returncode == 1 and "invalid hardlink" in err(r)
    # not a tar at all
    r = berth("cp", "-", "xx:/dst", input=b"this is not a tar" * 100, check=False)
    assert r.returncode == 1 and "not a tar" in err(r)
    # a directory is not replaced by a file, nor a file by a directory
    r = berth("cp", "-", "xx:/", input=_tar(("dst", "file", b"x")), check=False)
    assert r.returncode == 1 and "cannot overwrite directory" in err(r)
