#!/usr/bin/env bash
# Check a command of README.md on a fresh, minimal Debian 12, as a new user would run it.
#
#   bash scripts/check-fresh.sh [1|2] [--worktree]
#
# 1 (default) is README's first fenced block (install + demo), 2 its second (tests). The checkout
# is copied in as a `git clone` of HEAD, or as the work tree as it is with --worktree. The fresh
# system is `debootstrap --variant=minbase bookworm`, made once and kept as a tarball in
# /var/cache/berth-check; each check unpacks a new copy into a temporary directory, runs the
# command there in a chroot inside a private mount namespace (so every mount made for it, /proc,
# /sys, /dev, goes away with the namespace), and removes the copy afterwards. As root.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

block=1
worktree=0
for arg in "$@"; do
  case "$arg" in
    1 | 2) block=$arg ;;
    --worktree) worktree=1 ;;
    *) echo "usage: $0 [1|2] [--worktree]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "check-fresh.sh: run as root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "check-fresh.sh: apt-get install debootstrap" >&2; exit 1; }

cache=/var/cache/berth-check
base=$cache/bookworm-minbase.tar
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ ! -s "$base" ]; then
  mkdir -p "$cache"
  tmp=$(mktemp -d)
  debootstrap --variant=minbase bookworm "$tmp/root" "$mirror" >"$cache/debootstrap.log" 2>&1 || {
    echo "check-fresh.sh: debootstrap failed, see $cache/debootstrap.log" >&2; rm -rf "$tmp"; exit 1; }
  tar --numeric-owner -C "$tmp/root" -cf "$base.partial" . && mv "$base.partial" "$base"
  rm -rf "$tmp"
fi

work=$(mktemp -d /tmp/berth-fresh-XXXXXX)
root=$work/root
cleanup() {
  if grep -q " $root" /proc/self/mountinfo; then
    echo "check-fresh.sh: something is still mounted under $root; not removing it" >&2
    return
  fi
  chattr -i "$root"/opt/berth-venv/bin/python* 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir "$root"
tar --numeric-owner -C "$root" -xf "$base"
if [ "$worktree" = 1 ]; then
  mkdir "$root/root/berth"
  tar -C "$repo" --exclude=__pycache__ --exclude='*.egg-info' --exclude=./build -cf - . |
    tar -C "$root/root/berth" -xf -
else
  git clone -q "$repo" "$root/root/berth"
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"
# A machine whose egress re-signs TLS has its CA in the environment (PIP_CERT): a fresh machine
# there would have it too.
env_ca=()
if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then
  cp "$PIP_CERT" "$root/root/host-ca.crt"
  env_ca=(PIP_CERT=/root/host-ca.crt)
fi

cmd=$(awk -v want=$((block * 2 - 1)) '/^```/ { fence++; next } fence == want' "$repo/README.md")
[ -n "$cmd" ] || { echo "check-fresh.sh: README.md has no fenced block $block" >&2; exit 1; }
echo "+ $cmd"
# bash -s: the script runs in the new namespace; mount --bind makes the chroot a mount point, so
# that pivot_root works inside it as on a real root.
unshare -m bash -s "$root" "$cmd" "${env_ca[@]}" <<'EOF'
set -eu
root=$1; cmd=$2; shift 2
mount --make-rprivate /
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/run"
exec chroot "$root" /usr/bin/env -i HOME=/root TERM=xterm LANG=C.UTF-8 \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@" \
  /bin/bash -c "cd /root/berth && $cmd"
EOF
