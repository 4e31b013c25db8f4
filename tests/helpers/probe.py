"""An in-container probe: one busybox shell script that prints what a container sees, in labelled
sections, and the parsers that turn its output into comparable data.

The script runs as the container's PID 1 (`sh /probe.sh`) inside a busybox rootfs, so the same
bundle can be run by runc and by berth-runtime and the answers compared section by section:

    install_probe(rootfs)            write the script to rootfs/probe.sh; returns PROBE_ARGS
    parse_sections(stdout)           {"status": [...lines], "id": [...], ...}
    status_fields(lines)             {"CapEff": "00000000a80425fb", "Seccomp": "2", ...}
    mountinfo_rows(lines, cgpath)    mountinfo without what legitimately differs between runs
    mounts_rows(lines, cgpath)       /proc/mounts, the same way
    ls_rows(lines)                   `ls -ln` without sizes and times
    cgroup_rows(lines, cgpath)       /proc/1/cgroup with the container's path replaced
    ps_rows(lines)                   `ps -o pid,comm` with the probe's own pids (not 1) replaced
    outcome(lines)                   "exit=N" of a section that runs one command -> N (or None)

Each section starts with a line `@@@ NAME`; the last one is `@@@ end`, so a probe that died half
way is told apart from one whose last section is empty.
"""

from __future__ import annotations

import re
from pathlib import Path

MARK = "@@@ "
PROBE_PATH = "/probe.sh"
PROBE_ARGS = ["sh", PROBE_PATH]
CGROUP_TOKEN = "<cgroupsPath>"

# Runs under busybox ash. Every command that can fail reports its status as `exit=N` on a line
# of its own, with its message (stderr) before it.
PROBE_SCRIPT = r"""
s() { echo "@@@ $1"; }
s status
grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status
s status_pid1
grep -E '^(Uid|Gid|Groups|SigBlk|SigIgn|NoNewPrivs|Seccomp):' /proc/1/status
s id
id
s environ
tr '\0' '\n' < /proc/$$/environ
s cwd_umask
pwd; umask
s fds_pid1
ls /proc/1/fd
s oom_score_adj
cat /proc/self/oom_score_adj
s net
ip -o link 2>&1
s hostname
hostname
s pid1_cmdline
tr '\0' ' ' < /proc/1/cmdline; echo
s ps
ps -o pid,comm
s mountinfo
cat /proc/self/mountinfo
s mounts
cat /proc/mounts
s dev
ls -ln /dev
s dev_pts
ls -ln /dev/pts
s dev_dirs
for d in /dev/pts /dev/shm /dev/mqueue; do
  if [ -d "$d" ]; then echo "$d dir"; else echo "$d missing"; fi
done
s cgroup
cat /proc/1/cgroup
s sys_fs_cgroup
ls /sys/fs/cgroup
s cgroup_files
for f in pids/pids.max memory/memory.limit_in_bytes cpu/cpu.shares cpu/cpu.cfs_quota_us \
         cpuset/cpuset.cpus cpuset/cpuset.mems blkio/blkio.weight freezer/freezer.state \
         devices/devices.list; do
  [ -e "/sys/fs/cgroup/$f" ] && echo "$f: $(tr '\n' ';' < /sys/fs/cgroup/$f)"
done
s cgroup_write
touch /sys/fs/cgroup/berth-probe 2>&1; echo "exit=$?"
for d in /sys/fs/cgroup/*/; do
  mkdir "${d}berth-probe" 2>&1 && rmdir "${d}berth-probe"; echo "$d exit=$?"
done
s ulimit
ulimit -a
s dirs
ls -ldn / /dev /dev/pts /dev/shm /dev/mqueue /proc /sys /tmp
s write_proc_sys
(echo probe2 > /proc/sys/kernel/hostname) 2>&1; echo "exit=$?"
s write_proc_sys_other
(echo 1 > /proc/sys/vm/drop_caches) 2>&1; echo "exit=$?"
s create_in_sys
touch /sys/berth-probe 2>&1; echo "exit=$?"
s sysrq_trigger
if [ -e /proc/sysrq-trigger ]; then (echo h > /proc/sysrq-trigger) 2>&1; echo "exit=$?"
else echo absent; fi
s block_device
rootdev=$(awk '$5 == "/" { print $3; exit }' /proc/self/mountinfo)
if mknod /dev/berth-probe-blk b "${rootdev%%:*}" "${rootdev##*:}" 2>&1; then
  echo mknod-ok
  head -c 1 /dev/berth-probe-blk 2>&1 > /dev/null; echo "exit=$?"
  rm -f /dev/berth-probe-blk
else echo mknod-failed; fi
s kcore
if [ -e /proc/kcore ]; then echo "size=$(wc -c < /proc/kcore)"; else echo absent; fi
s unshare_user
if busybox --list | grep -qx unshare; then unshare -U true 2>&1; echo "exit=$?"
else echo no-applet; fi
s end
"""


def install_probe(rootfs: Path) -> list[str]:
    """Write the probe into `rootfs` (at PROBE_PATH); return the process.args that run it."""
    path = Path(rootfs) / PROBE_PATH.lstrip("/")
    path.write_text(PROBE_SCRIPT)
    path.chmod(0o755)
    return list(PROBE_ARGS)


def parse_sections(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(MARK):
            current = sections.setdefault(line[len(MARK):].strip(), [])
        elif current is not None:
            current.append(line.rstrip())
    return sections


def status_fields(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out


def _cg(text: str, cgroups_path: str | None) -> str:
    return text.replace(cgroups_path, CGROUP_TOKEN) if cgroups_path else text


def _propagation(optional: list[str]) -> str:
    # "shared:12 master:3" -> "shared,master": peer group numbers are per boot and per run.
    kinds = sorted(o.split(":", 1)[0] for o in optional)
    return ",".join(kinds) or "private"


def mountinfo_rows(lines: list[str], cgroups_path: str | None = None) -> list[str]:
    """mountinfo as "mountpoint fstype root=R source=S opts=O super=X prop=P dev=D".

    Left out: mount and parent ids, and the device number of anonymous filesystems (major 0:
    proc, tmpfs, sysfs... are numbered in the order they were made). Kept: the device of a real
    block device, the root within the filesystem (what a bind or a mask shows), the per-mount
    options (ro, nosuid, nodev, noexec, atime flags), the superblock options and the kind of
    propagation. The container's cgroup path is replaced by CGROUP_TOKEN.
    """
    rows = []
    for line in lines:
        left, sep, right = line.partition(" - ")
        lf, rf = left.split(), right.split()
        if not sep or len(lf) < 6 or len(rf) < 3:
            rows.append(f"unparsed: {line}")
            continue
        dev = lf[2] if not lf[2].startswith("0:") else "anon"
        root, point, opts, optional = lf[3], lf[4], lf[5], lf[6:]
        fstype, source, sup = rf[0], rf[1], rf[2]
        rows.append(_cg(
            f"{point} {fstype} root={root} source={source} opts={opts} super={sup} "
            f"prop={_propagation(optional)} dev={dev}", cgroups_path))
    return rows


def mounts_rows(lines: list[str], cgroups_path: str | None = None) -> list[str]:
    return [_cg(" ".join(line.split()), cgroups_path) for line in lines]


_DATE = 3  # busybox `ls -l`: "Nov 28 05:43" or "Nov 28  2024"


def ls_rows(lines: list[str]) -> list[str]:
    """`ls -ln` rows as "mode links uid gid [major,minor] name[ -> target]" (no size, no time)."""
    rows = []
    for line in lines:
        f = line.split()
        if not f or f[0] == "total":
            continue
        mode, links, uid, gid = f[:4]
        if mode[0] in "cb":
            # "1,   7" may be one word or two
            rest = f[4:]
            if rest[0].endswith(",") and len(rest) > 1:
                dev, rest = rest[0] + rest[1], rest[2:]
            else:
                dev, rest = rest[0], rest[1:]
            name = " ".join(rest[_DATE:])
            rows.append(f"{mode} {links} {uid} {gid} {dev} {name}")
        else:
            name = " ".join(f[5 + _DATE:])
            rows.append(f"{mode} {links} {uid} {gid} {name}")
    return rows


def cgroup_rows(lines: list[str], cgroups_path: str | None) -> list[str]:
    return [_cg(line, cgroups_path) for line in lines]


def ps_rows(lines: list[str]) -> list[str]:
    """`ps -o pid,comm` with every pid but 1 replaced by "N" (the probe's own children)."""
    rows = []
    for line in lines:
        f = line.split(None, 1)
        if len(f) == 2 and f[0].isdigit() and f[0] != "1":
            rows.append(f"N {f[1]}")
        else:
            rows.append(" ".join(line.split()))
    return rows


_EXIT = re.compile(r"^exit=(\d+)$")


def outcome(lines: list[str]) -> int | None:
    """The N of the last `exit=N` line of a section, or None when there is none."""
    for line in reversed(lines):
        m = _EXIT.match(line.strip())
        if m:
            return int(m.group(1))
    return None
