#!/usr/bin/env bash
# Make an OCI bundle in DIR: DIR/rootfs, a root filesystem of Debian's static busybox, and
# DIR/config.json, the config `runc spec` writes (terminal off), whose process prints a greeting
# from inside the container. Run it with any OCI runtime, as root:
#
#   bash examples/make-bundle.sh /tmp/berth-demo
#   berth-runtime run --bundle /tmp/berth-demo demo      (or: runc run --bundle ... demo)
#
# Needs: busybox-static (/bin/busybox). Running it again on the same DIR rebuilds the bundle.
set -euo pipefail

dir=${1:?usage: make-bundle.sh DIR}
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "make-bundle.sh: $busybox missing: apt-get install busybox-static" >&2; exit 1; }

if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
  if [ -f "$dir/config.json" ] && [ -x "$dir/rootfs/bin/busybox" ]; then
    rm -rf "${dir:?}/rootfs" "${dir:?}/config.json"   # a bundle this script made: rebuild it
  else
    echo "make-bundle.sh: $dir is not empty and not a bundle made by this script" >&2; exit 1
  fi
fi

rootfs=$dir/rootfs
mkdir -p "$rootfs"
for d in bin sbin usr/bin usr/sbin etc proc sys dev root home/app tmp; do mkdir -p "$rootfs/$d"; done
chmod 1777 "$rootfs/tmp"
chmod 700 "$rootfs/root"
chmod 555 "$rootfs/proc" "$rootfs/sys"
chown 1000:1000 "$rootfs/home/app"

cp "$(readlink -f "$busybox")" "$rootfs/bin/busybox"
chmod 755 "$rootfs/bin/busybox"
# One relative symlink per applet (bin/sh -> busybox, usr/bin/env -> ../../bin/busybox).
"$busybox" --list-full | while read -r applet; do
  case "$applet" in
    */*) ;;            # skips linuxrc, an initrd's init
    *) continue ;;
  esac
  [ "$applet" = bin/busybox ] && continue
  case "$applet" in
    bin/*) target=busybox ;;
    *) target=$(echo "${applet%/*}/" | sed 's|[^/]*/|../|g')bin/busybox ;;
  esac
  ln -sf "$target" "$rootfs/$applet"
done

cat > "$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
app:x:1000:1000:app:/home/app:/bin/sh
EOF
cat > "$rootfs/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
app:x:1000:
EOF

cat > "$dir/config.json" <<'EOF'
{
  "ociVersion": "1.0.2-dev",
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0},
    "args": ["sh", "-c", "echo \"Hello from $(hostname): this shell is PID $$ of a container of its own.\""],
    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    },
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    "noNewPrivileges": true
  },
  "root": {"path": "rootfs", "readonly": true},
  "hostname": "berth-demo",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
  ],
  "linux": {
    "resources": {"devices": [{"allow": false, "access": "rwm"}]},
    "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"},
                   {"type": "mount"}],
    "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                    "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
    "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
  }
}
EOF
echo "bundle ready: $dir"
