"""Small root filesystems for tests and benchmarks, built from Debian's static busybox.

A rootfs made here holds /bin/busybox, one relative symlink per applet (bin/sh -> busybox,
usr/bin/env -> ../../bin/busybox ...), /etc/passwd and /etc/group with root (0), nobody (65534)
and app (1000), and the usual empty directories. Relative links keep the tree self-contained:
followed from the host, they still land on the rootfs' own busybox, never on the host's.

    make_rootfs(dest)              build a rootfs in dest (created; must be empty or absent)
    copy_rootfs(src, dest)         cp -a of a built rootfs (what the fixtures do per test)
    make_rootfs_tar(dest_tar)      the same tree as an uncompressed tar (a layer, or an image
                                   for `podman import` / `berth image import`)

Raises RootfsError when the host's busybox is missing or not static.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    "app:x:1000:1000:app:/home/app:/bin/sh\n"
)
GROUP = "root:x:0:\nnobody:x:65534:\napp:x:1000:\n"

APP_UID = APP_GID = 1000
NOBODY_UID = NOBODY_GID = 65534

# (path, mode, uid, gid) of the directories every rootfs has.
DIRS: tuple[tuple[str, int, int, int], ...] = (
    ("bin", 0o755, 0, 0),
    ("sbin", 0o755, 0, 0),
    ("usr", 0o755, 0, 0),
    ("usr/bin", 0o755, 0, 0),
    ("usr/sbin", 0o755, 0, 0),
    ("etc", 0o755, 0, 0),
    ("proc", 0o555, 0, 0),
    ("sys", 0o555, 0, 0),
    ("dev", 0o755, 0, 0),
    ("tmp", 0o1777, 0, 0),
    ("root", 0o700, 0, 0),
    ("home", 0o755, 0, 0),
    ("home/app", 0o755, APP_UID, APP_GID),
)


class RootfsError(Exception):
    """The host cannot provide what a test rootfs needs (busybox-static)."""


def _is_static_elf(path: Path) -> bool:
    """True when the ELF file has no program interpreter (PT_INTERP), i.e. is static."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # ELFCLASS64 only: Debian amd64/arm64
            return False
        order = "little" if head[5] == 1 else "big"
        phoff = int.from_bytes(head[32:40], order)
        phentsize = int.from_bytes(head[54:56], order)
        phnum = int.from_bytes(head[56:58], order)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        p_type = int.from_bytes(table[i * phentsize : i * phentsize + 4], order)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def applets(busybox: Path = BUSYBOX) -> list[str]:
    """Paths (relative to /) at which busybox installs its applets, from `busybox --list-full`."""
    out = subprocess.run(
        [str(busybox), "--list-full"], check=True, capture_output=True, text=True
    ).stdout
    # "linuxrc" is busybox's initrd init at the top of the tree; a container has no use for it.
    return [p for p in out.split() if "/" in p and p != "bin/busybox"]


def make_rootfs(dest: Path, *, busybox: Path = BUSYBOX) -> Path:
    """Build a busybox root filesystem in `dest` (created if absent) and return `dest`."""
    dest = Path(dest)
    if not busybox.exists():
        raise RootfsError(f"{busybox} not found: install Debian's busybox-static")
    real = busybox.resolve()
    if not _is_static_elf(real):
        raise RootfsError(f"{real} is not a static binary: install busybox-static, not busybox")
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise RootfsError(f"{dest}: not empty; a rootfs is built into an empty directory")
    for rel, mode, uid, gid in DIRS:
        d = dest / rel
        d.mkdir(exist_ok=True)
        os.chown(d, uid, gid)
        os.chmod(d, mode)  # after mkdir, so the umask does not drop the sticky bit of /tmp
    shutil.copyfile(real, dest / "bin/busybox")
    os.chmod(dest / "bin/busybox", 0o755)
    for applet in applets(real):
        link = dest / applet
        link.parent.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath("bin/busybox", os.path.dirname(applet) or ".")
        if not link.is_symlink():
            os.symlink(target, link)
    (dest / "etc/passwd").write_text(PASSWD)
    (dest / "etc/group").write_text(GROUP)
    for name in ("etc/passwd", "etc/group"):
        os.chmod(dest / name, 0o644)
    return dest


def copy_rootfs(src: Path, dest: Path) -> Path:
    """Copy a built rootfs with `cp -a` (owners, modes, links kept). `dest` must not exist."""
    dest = Path(dest)
    if dest.exists():
        raise RootfsError(f"{dest}: already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A full copy, not hardlinks: a test that writes into its container (even /bin/busybox, as in
    # a CVE-2019-5736 check) must not change the cached tree that later tests copy.
    subprocess.run(["cp", "-a", "--reflink=auto", str(src), str(dest)], check=True)
    return dest


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Numeric owners only, like `tar --numeric-owner`, and a fixed time so the tar (and so its
    # digest) is the same from run to run.
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def make_rootfs_tar(dest_tar: Path, rootfs: Path | None = None) -> Path:
    """Write an uncompressed tar of `rootfs` (built afresh when None) to `dest_tar`.

    Entries are named ./bin/busybox ..., in sorted order, with numeric owners and mtime 0, so the
    same tree always gives the same bytes.
    """
    dest_tar = Path(dest_tar)
    dest_tar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="berth-rootfs-") as tmp:
        if rootfs is None:
            rootfs = make_rootfs(Path(tmp) / "rootfs")
        partial = dest_tar.with_name(dest_tar.name + ".partial")
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(str(rootfs), arcname=".", filter=_normalise)
        os.replace(partial, dest_tar)
    return dest_tar
