#!/usr/bin/env bash
# Make the image `busybox:local` in berth's store from Debian's static busybox (this machine
# reaches no registry, so the examples' base image is made here). Needs busybox-static, and
# berth installed by scripts/install.sh. Running it again re-tags the same image.
#
#   bash examples/busybox-image.sh [BERTH]      (BERTH: the berth command, default
#                                                /opt/berth-venv/bin/berth)
set -euo pipefail

berth=${1:-/opt/berth-venv/bin/berth}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bash "$here/make-bundle.sh" "$tmp/bundle" >/dev/null
tar --numeric-owner --sort=name --mtime=@0 -C "$tmp/bundle/rootfs" -cf - . |
  "$berth" import -c 'CMD ["sh"]' - busybox:local >/dev/null
echo "busybox:local"
