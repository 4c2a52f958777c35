#!/usr/bin/env bash
# What the library costs to compile: g++ CPU time (user + sys, the best of
# RUNS tries; CPU time, not wall time, so a loaded machine skews it less) of
#   std        a TU including only the standard headers the umbrella needs
#   umbrella   #include <resilience/resilience.hpp>
#   4 policies a TU calling through resilient<> with retry, circuit breaker,
#              timeout and rate limit (-fsyntax-only, and -c -O2: code generated)
#   each public header alone, and the same over a TU of its own standard
#              headers (those it and the library headers it includes name)
# Issue #12's targets: umbrella <= 2.5 s, four policies <= 5 s, each
# single-policy header <= 1.5 s over its standard headers.
#
#   tests/bench/compile_time.sh              # all rows
#   RUNS=1 tests/bench/compile_time.sh       # quicker, noisier
#   CXX=clang++ tests/bench/compile_time.sh  # another compiler
set -euo pipefail
cd "$(dirname "$0")/../.."
CXX=${CXX:-g++}
RUNS=${RUNS:-3}
FLAGS=(-std=c++20 -Iinclude)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TIMEFORMAT='%U %S'

# seconds FILE [flags...]: the best user+sys time of RUNS compiles.
seconds() {
  local file=$1 best="" t u s
  shift
  for ((i = 0; i < RUNS; i++)); do
    t=$({ time "$CXX" "${FLAGS[@]}" "$@" "$file" -o "$work/out.o" >/dev/null 2>"$work/err"; } 2>&1) ||
      { cat "$work/err" >&2; echo "compile failed: $file" >&2; exit 1; }
    read -r u s <<<"$t"
    t=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
    if [ -z "$best" ] || awk -v a="$t" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$t; fi
  done
  echo "$best"
}

# std_includes HEADER...: the <...> includes of the headers and of every
# library header they include, transitively (fmt's too: logging.hpp's own
# dependency counts as its baseline).
std_includes() {
  local -A seen=()
  local queue=("$@") h dir inc
  while [ ${#queue[@]} -gt 0 ]; do
    h=${queue[0]}
    queue=("${queue[@]:1}")
    [ -n "${seen[$h]:-}" ] && continue
    seen[$h]=1
    dir=$(dirname "$h")
    grep -ho '^#include <[^>]*>' "$h" | sed 's/#include <\(.*\)>/\1/' | grep -v '^resilience/' || true
    while read -r inc; do
      queue+=("$(realpath -m --relative-to=. "$dir/$inc")")
    done < <(grep -ho '^#include "[^"]*"' "$h" | sed 's/#include "\(.*\)"/\1/')
  done | sort -u
}

# std_tu NAME HEADER...: writes a TU of the headers' standard includes.
std_tu() {
  local name=$1
  shift
  std_includes "$@" | sed 's/.*/#include <&>/' >"$work/$name.cpp"
  echo "$work/$name.cpp"
}

row() { printf '| %-34s | %8s | %8s | %-17s |\n' "$1" "$2" "$3" "$4"; }

headers=(include/resilience/*.hpp)
echo "$CXX $($CXX -dumpversion), ${FLAGS[*]}, best of $RUNS, CPU s (user+sys); load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
echo
row "TU" "CPU s" "over std" "target"
row "---" "---:" "---:" "---"

std_all=$(std_tu std_all include/resilience/resilience.hpp)
t_std=$(seconds "$std_all" -fsyntax-only)
row "standard headers of the umbrella" "$t_std" "" ""

echo '#include <resilience/resilience.hpp>' >"$work/umbrella.cpp"
t=$(seconds "$work/umbrella.cpp" -fsyntax-only)
row "resilience.hpp (umbrella)" "$t" "$(awk -v a="$t" -v b="$t_std" 'BEGIN { printf "%.2f", a - b }')" "<= 2.5 s"

cat >"$work/four.cpp" <<'EOF'
#include <resilience/circuit_breaker.hpp>
#include <resilience/rate_limit.hpp>
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>
#include <resilience/timeout.hpp>

#include <chrono>
#include <string>

using namespace std::chrono_literals;

double fetch_factor(const std::string& activity) { return static_cast<double>(activity.size()) * 0.1; }

int main() {
  resilience::rate_limiter limits;
  limits.configure("factor_api", {.requests_per_second = 10, .burst_size = 5});
  resilience::circuit_breaker breaker{{.name = "factor_api"}};
  resilience::resilient fetch{fetch_factor, resilience::retry{{.max_retries = 3, .base_delay = 100ms}}, breaker,
                              resilience::timeout{2s}, resilience::rate_limit{limits, "factor_api"}};
  const auto o = fetch.try_call(std::string{"electricity"});
  return o.has_value() && fetch(std::string{"gas"}) > 0 ? 0 : 1;
}
EOF
t=$(seconds "$work/four.cpp" -fsyntax-only)
row "four policies, -fsyntax-only" "$t" "" "<= 5 s"
t=$(seconds "$work/four.cpp" -c -O2)
row "four policies, -c -O2" "$t" "" "<= 5 s"

for h in "${headers[@]}"; do
  name=${h#include/}
  echo "#include <$name>" >"$work/alone.cpp"
  t=$(seconds "$work/alone.cpp" -fsyntax-only)
  base=$(std_tu base "$h")
  b=$(seconds "$base" -fsyntax-only)
  case $name in
    */retry.hpp | */circuit_breaker.hpp | */timeout.hpp | */rate_limit.hpp | */limiter.hpp | */bulkhead.hpp | */fallback.hpp | \
      */cache.hpp | */degradation.hpp) target="<= 1.5 s over std" ;;
    *) target="" ;;
  esac
  row "$name" "$t" "$(awk -v a="$t" -v b="$b" 'BEGIN { printf "%.2f", a - b }')" "$target"
done
