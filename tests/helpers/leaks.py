"""What a test may leave on the machine, and a check that it left nothing.

A LeakSnapshot records, at one moment:
  mounts     the mount table of this process' namespace (/proc/self/mountinfo), each entry as
             "mountpoint fstype source root" (mount ids and options left out, so a remount of the
             same thing is not a change), numbered when several are stacked on one point
  cgroups    directories under /sys/fs/cgroup (depth <= 4) with a path component naming berth
  netns      named network namespaces (/run/netns, what `ip netns list` shows)
  veths      veth links of this network namespace
  bridges    bridge links of this network namespace (/sys/class/net/*/bridge)
  nft        nftables tables whose name starts with berth (`nft list tables`)
  processes  live processes whose command line names berth, except this process, its ancestors
             and pytest runs

    before = leak_snapshot()
    ...
    leaked = wait_for_no_leaks(before)       # retries while items vanish lazily
    assert not leaked, leaked.describe()

Only items that are new since `before` count: something that was there before and went away (a
leak of an earlier run cleaned up, or another session's container) is not this test's leak.
cleanup(leaked, scope) removes what provably belongs to the test (mounts under its tmp dir,
processes whose command line or environment names it); the rest is reported, never touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_DEPTH = 4
NETNS_DIR = Path("/run/netns")
WORD = "berth"


@dataclass(frozen=True, order=True)
class Proc:
    pid: int
    start: int  # start time in clock ticks since boot (field 22 of /proc/PID/stat): pid reuse
    cmdline: str = field(compare=False)
    environ: tuple[str, ...] = field(compare=False, repr=False, default=())

    def __str__(self) -> str:
        return f"pid {self.pid}: {self.cmdline}"


@dataclass(frozen=True)
class LeakSnapshot:
    mounts: frozenset[str] = frozenset()
    cgroups: frozenset[str] = frozenset()
    netns: frozenset[str] = frozenset()
    veths: frozenset[str] = frozenset()
    bridges: frozenset[str] = frozenset()
    nft: frozenset[str] = frozenset()
    processes: frozenset[Proc] = frozenset()

    def new_since(self, before: LeakSnapshot) -> LeakSnapshot:
        """The items of this snapshot that `before` does not have."""
        return LeakSnapshot(**{f.name: getattr(self, f.name) - getattr(before, f.name)
                               for f in fields(self)})

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def describe(self) -> str:
        lines = []
        for f in fields(self):
            items = sorted(getattr(self, f.name))
            if items:
                lines.append(f"{f.name}:")
                lines.extend(f"  {item}" for item in items)
        return "\n".join(lines) if lines else "nothing"


# --- readers ---------------------------------------------------------------------------------

def read_mounts(mountinfo: str = "/proc/self/mountinfo") -> frozenset[str]:
    with open(mountinfo) as f:
        text = f.read()
    seen: Counter[str] = Counter()
    entries = []
    for line in text.splitlines():
        # id parent major:minor root mountpoint options [optional fields...] - fstype source super
        left, _, right = line.partition(" - ")
        lf, rf = left.split(), right.split()
        if len(lf) < 5 or len(rf) < 2:
            continue
        key = f"{lf[4]} {rf[0]} {rf[1]} {lf[3]}"
        seen[key] += 1
        entries.append(key if seen[key] == 1 else f"{key} #{seen[key]}")
    return frozenset(entries)


def read_cgroups(root: Path = CGROUP_ROOT, depth: int = CGROUP_DEPTH) -> frozenset[str]:
    found: list[str] = []

    def walk(d: Path, level: int, named: bool) -> None:
        try:
            with os.scandir(d) as it:
                subdirs = [e for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            return
        for e in subdirs:
            here = named or WORD in e.name
            if here:
                found.append(e.path)
            if level < depth:
                walk(Path(e.path), level + 1, here)

    walk(root, 1, False)
    return frozenset(found)


def read_netns(d: Path = NETNS_DIR) -> frozenset[str]:
    try:
        return frozenset(os.listdir(d))
    except OSError:
        return frozenset()


def read_veths() -> frozenset[str]:
    ip = shutil.which("ip") or "/usr/sbin/ip"
    if not os.path.exists(ip):
        return frozenset()
    out = subprocess.run([ip, "-o", "link", "show", "type", "veth"],
                         capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        # "12: veth0@if11: <BROADCAST,...> ..."
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.add(parts[1].strip().split("@")[0])
    return frozenset(names)


def read_bridges(d: str = "/sys/class/net") -> frozenset[str]:
    try:
        return frozenset(n for n in os.listdir(d) if os.path.isdir(os.path.join(d, n, "bridge")))
    except OSError:
        return frozenset()


def read_nft_tables() -> frozenset[str]:
    nft = shutil.which("nft") or "/usr/sbin/nft"
    if not os.path.exists(nft):
        return frozenset()
    out = subprocess.run([nft, "list", "tables"], capture_output=True, text=True).stdout
    # "table ip berth"
    return frozenset(line.strip() for line in out.splitlines()
                     if line.split()[-1:] and line.split()[-1].startswith(WORD))


def _ancestors(pid: int) -> set[int]:
    chain = set()
    while pid > 1 and pid not in chain:
        chain.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            pid = int(stat.rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return chain


def _is_pytest(argv: list[str]) -> bool:
    head = [os.path.basename(a) for a in argv[:3]]
    return any(a in ("pytest", "py.test") or a.startswith("pytest-") for a in head)


def read_processes() -> frozenset[Proc]:
    skip = _ancestors(os.getpid())
    word = WORD.encode()
    procs = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in skip:
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                raw = f.read()
            if word not in raw:
                continue
            argv = [a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0")]
            if _is_pytest(argv):
                continue
            with open(f"/proc/{name}/stat") as f:
                start = int(f.read().rpartition(")")[2].split()[19])
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    env = tuple(e.decode(errors="replace") for e in f.read().split(b"\0") if e)
            except OSError:
                env = ()
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        procs.append(Proc(int(name), start, " ".join(argv), env))
    return frozenset(procs)


def leak_snapshot() -> LeakSnapshot:
    return LeakSnapshot(
        mounts=read_mounts(),
        cgroups=read_cgroups(),
        netns=read_netns(),
        veths=read_veths(),
        bridges=read_bridges(),
        nft=read_nft_tables(),
        processes=read_processes(),
    )


# --- checking --------------------------------------------------------------------------------

def wait_for_no_leaks(before: LeakSnapshot, timeout: float = 5.0) -> LeakSnapshot:
    """Poll until nothing is new since `before`, for at most `timeout` seconds.

    Returns what is still new at the end (falsy when nothing). Cgroups, network namespaces and
    veth pairs go away a little after their last process has exited, hence the polling.
    """
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        leaked = leak_snapshot().new_since(before)
        if not leaked or time.monotonic() >= deadline:
            return leaked
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def _mentions(text: str, scope: Iterable[str]) -> bool:
    return any(s and s in text for s in scope)


def cleanup(leaked: LeakSnapshot, scope: Iterable[str | Path]) -> list[str]:
    """Remove the leaked items that provably belong to `scope` (a test's own directories).

    Kills (SIGKILL) leaked processes whose command line or environment names a scope path, then
    detaches leaked mounts whose mount point lies under a scope path, innermost first, so that
    removing the test's tmp dir can never descend into a mounted host directory. Leaves cgroups,
    network namespaces, veths and everything outside the scope alone. Returns what it did.
    """
    scope = [os.path.realpath(s) for s in scope]
    done = []
    for p in sorted(leaked.processes):
        if _mentions(p.cmdline, scope) or any(_mentions(e, scope) for e in p.environ):
            try:
                os.kill(p.pid, signal.SIGKILL)
                done.append(f"killed {p}")
            except ProcessLookupError:
                pass
    points = []
    for m in leaked.mounts:
        point = m.split(" ", 1)[0].replace("\\040", " ")
        if any(point == s or point.startswith(s.rstrip("/") + "/") for s in scope):
            points.append(point)
    for point in sorted(set(points), key=len, reverse=True):
        # umount2(MNT_DETACH) through util-linux: repeated while mounts are stacked on the point.
        for _ in range(16):
            r = subprocess.run(["umount", "-l", point], capture_output=True)
            if r.returncode != 0:
                break
            done.append(f"unmounted {point}")
    return done
