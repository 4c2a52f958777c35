#!/usr/bin/env bash
# The package as a user meets it, on a Debian 12 machine where this script may
# install and remove packages (run as root; tests/package/fresh_root.sh runs it
# in a throwaway root):
#   1. build libresilience-dev_<version>_all.deb with CPack and install it with apt-get;
#   2. build and run a consumer through find_package(resilience), and one
#      through pkg-config;
#   3. remove the package and check that it left no file behind;
#   4. build and run a consumer that gets the library with FetchContent from a
#      local git clone (no package installed).
#   bash tests/package/check.sh [WORK_DIR]
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-/tmp/resilience-package}
say() { echo "--- $*"; }

if [ "$(id -u)" -ne 0 ]; then echo "check.sh installs a package: run it as root (in a throwaway root)" >&2; exit 2; fi
needed=(cmake make g++ pkg-config git ca-certificates)
missing=()
for p in "${needed[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends "${missing[@]}" >/dev/null
fi
rm -rf "$work" && mkdir -p "$work"
version=$(sed -n 's/^#define RESILIENCE_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\).*/\2/p' "$src/include/resilience/version.hpp" | paste -sd.)

say "cpack: libresilience-dev $version"
cmake -S "$src" -B "$work/build" -DRESILIENCE_BUILD_TESTS=OFF -DRESILIENCE_BUILD_EXAMPLES=OFF -DRESILIENCE_BUILD_BENCHMARKS=OFF >/dev/null
(cd "$work/build" && cpack -G DEB >/dev/null)
deb=$work/build/libresilience-dev_${version}_all.deb
[ -f "$deb" ] || { echo "no $deb" >&2; ls "$work/build" >&2; exit 1; }
dpkg-deb -f "$deb" Package Version Architecture Depends Recommends Suggests

say "apt-get install $deb"
apt-get install -y -qq -o Dpkg::Use-Pty=0 "$deb" >/dev/null
[ "$(dpkg-query -W -f='${Version}' libresilience-dev)" = "$version" ]
grep -q "RESILIENCE_VERSION_MAJOR" /usr/include/resilience/version.hpp

say "consumer through find_package"
cmake -S "$src/tests/consumer" -B "$work/find_package" >/dev/null
cmake --build "$work/find_package" >/dev/null
"$work/find_package/consumer"

say "consumer through pkg-config"
[ "$(pkg-config --modversion resilience)" = "$version" ]
# shellcheck disable=SC2046 # pkg-config's output is meant to be split into flags
g++ $(pkg-config --cflags resilience) "$src/tests/consumer/main.cpp" -o "$work/pkg_config_consumer" $(pkg-config --libs resilience)
"$work/pkg_config_consumer"

say "apt-get purge libresilience-dev"
apt-get purge -y -qq -o Dpkg::Use-Pty=0 libresilience-dev >/dev/null
if dpkg-query -W libresilience-dev >/dev/null 2>&1 && [ "$(dpkg-query -W -f='${Status}' libresilience-dev)" != "unknown ok not-installed" ]; then
  echo "the package is still known to dpkg: $(dpkg-query -W -f='${Status}' libresilience-dev)" >&2; exit 1
fi
for left in /usr/include/resilience /usr/share/resilience /usr/share/pkgconfig/resilience.pc /usr/share/doc/resilience; do
  [ ! -e "$left" ] || { echo "removing the package left $left" >&2; exit 1; }
done
! pkg-config --exists resilience || { echo "pkg-config still finds resilience" >&2; exit 1; }

say "consumer through FetchContent from a local clone"
git clone -q "$src" "$work/clone"
cmake -S "$src/tests/package/fetchcontent" -B "$work/fetchcontent" -DRESILIENCE_GIT="file://$work/clone" \
  -DRESILIENCE_GIT_TAG="$(git -C "$work/clone" rev-parse HEAD)" -DCONSUMER_MAIN="$src/tests/consumer/main.cpp" >/dev/null
cmake --build "$work/fetchcontent" >/dev/null
"$work/fetchcontent/consumer"

say "package check passed"
