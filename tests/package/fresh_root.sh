#!/usr/bin/env bash
# Runs tests/package/check.sh in a fresh, minimal Debian 12 root (debootstrap,
# cached as a tarball under CACHE_DIR), with a clean clone of this checkout's
# committed HEAD, so that installing and removing the package touches nothing
# on this machine. Skips (exit 0, with a message) where a chroot is not
# possible: not root, no way to get debootstrap, or chroot refused.
#   bash tests/package/fresh_root.sh
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
cache_dir=${CACHE_DIR:-/var/tmp/resilience-package-root}
skip() { echo "package check skipped: $*"; exit 0; }

[ "$(id -u)" -eq 0 ] || skip "not root (a chroot needs root)"
chroot / true 2>/dev/null || skip "chroot is not allowed here"
if ! command -v debootstrap >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; } ||
    skip "debootstrap cannot be installed"
fi
mkdir -p "$cache_dir"
tarball=$cache_dir/bookworm-minbase.tar
if [ ! -f "$tarball" ]; then
  mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  echo "debootstrap bookworm (${mirror:-default mirror})"
  rm -rf "$cache_dir/base"
  debootstrap --variant=minbase bookworm "$cache_dir/base" ${mirror:+"$mirror"} >"$cache_dir/debootstrap.log" 2>&1 ||
    { tail -n 20 "$cache_dir/debootstrap.log"; echo "debootstrap failed" >&2; exit 1; }
  tar -C "$cache_dir/base" -cf "$tarball" .
  rm -rf "$cache_dir/base"
fi
root=$(mktemp -d /var/tmp/resilience-root.XXXXXX)
cleanup() {
  umount "$root/proc" 2>/dev/null || true
  umount "$root/dev" 2>/dev/null || true
  # never delete through a mount that is still there (it would reach the host's /dev)
  if mountpoint -q "$root/dev" || mountpoint -q "$root/proc"; then echo "left $root mounted" >&2; return; fi
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT
tar -C "$root" -xf "$tarball"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
git clone -q "$src" "$root/project"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  bash -c "cd /project && bash tests/package/check.sh /tmp/resilience-package"
