#!/usr/bin/env bash
# Install berth on Debian 12, as root, from this checkout. Idempotent: run it again after a pull.
#
#   bash scripts/install.sh          berth: Debian packages, a venv at /opt/berth-venv, pip install .
#   bash scripts/install.sh --test   also what the tests and benchmarks need (runc, crun, iproute2,
#                                    pytest) and berth installed editable (pip install -e '.[test,bench]': matplotlib for bench charts)
#
# The venv is made with --copies, so its interpreter is a file of its own, and that file is then
# made immutable (chattr +i) where the filesystem allows: berth-runtime runs on that interpreter,
# and a container that reaches it through /proc/PID/exe (the CVE-2019-5736 class) cannot overwrite
# it. BERTH_VENV overrides the venv path.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${BERTH_VENV:-/opt/berth-venv}
mode=${1:-}
case "$mode" in
  "" | --test) ;;
  *) echo "usage: $0 [--test]" >&2; exit 2 ;;
esac
if [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (berth creates namespaces, mounts and cgroups)" >&2
  exit 1
fi

# nftables: the firewall table of bridge networks (engine/networks.py)
packages=(python3 python3-venv busybox-static libseccomp2 e2fsprogs ca-certificates procps
          nftables)
if [ "$mode" = --test ]; then
  # gcc and libc6-dev build the static helper of the CVE-2019-5736 attack test; strace delays
  # forks in the exec-status race test.
  packages+=(runc crun iproute2 procps util-linux tar gcc libc6-dev strace)
  # podman, skopeo and umoci read what `berth save` writes (tests/integration/test_interop.py)
  packages+=(podman skopeo umoci)
fi

# apt-get update only when something is missing: a second run stays quick and offline.
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The interpreter files of the venv (with --copies: python, python3, python3.11, all real files).
interpreters() { find "$venv/bin" -maxdepth 1 -name 'python*' -type f 2>/dev/null || true; }
unlock() { interpreters | while read -r f; do chattr -i "$f" 2>/dev/null || true; done; }

py=/usr/bin/python3  # Debian's, whatever else is first on PATH
want=$("$py" -c 'import sys; print(sys.version)')
have=$("$venv/bin/python" -c 'import sys; print(sys.version)' 2>/dev/null || true)
if [ "$have" != "$want" ]; then
  # Missing, broken, or copied from another Python build: make it anew.
  unlock
  "$py" -m venv --copies --clear "$venv"
fi

if [ "$mode" = --test ]; then
  "$venv/bin/pip" install -q -e '.[test,bench]'
  # Editable: bytecode is not compiled at install; compile it now, so that a container start
  # does not pay for it (or pay on every run where PYTHONDONTWRITEBYTECODE is set).
  "$venv/bin/python" -m compileall -q src >/dev/null
else
  "$venv/bin/pip" install -q .
fi

interpreters | while read -r f; do
  chattr +i "$f" 2>/dev/null || echo "install.sh: note: could not make $f immutable" >&2
done
echo "berth installed in $venv ($("$venv/bin/python" -c 'import berth; print(berth.__version__)'))"
