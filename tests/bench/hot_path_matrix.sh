#!/usr/bin/env bash
# The hot-path matrix of issue #13: builds tests/bench/bench_hot_paths.cpp
# with g++ and clang++ at -O2 and -O3 (four single-file builds, no CMake),
# runs each REPS times (default 5) and prints one Markdown table. Each cell is
# the row's cost over its baseline from the same binary and run, from the
# fastest repetition's CPU time (the least disturbed by other load on a
# shared machine); the last columns give the targets. Allocations per call
# are checked: a row that allocates is marked.
#
#   bash tests/bench/hot_path_matrix.sh            # REPS=5 MIN_TIME=0.2 OUT=build-matrix
set -euo pipefail
cd "$(dirname "$0")/../.."
reps=${REPS:-5}
min_time=${MIN_TIME:-0.2}
out=${OUT:-build-matrix}
mkdir -p "$out"
for cxx in g++ clang++; do
  for opt in O2 O3; do
    bin="$out/hot_paths_${cxx}_${opt}"
    if [ ! -x "$bin" ] || [ tests/bench/bench_hot_paths.cpp -nt "$bin" ] || [ -n "${REBUILD:-}" ]; then
      echo "building $bin" >&2
      "$cxx" -std=c++20 "-$opt" -DNDEBUG -Wall -Wextra -Wpedantic -Werror -Iinclude -Itests/bench \
        tests/bench/bench_hot_paths.cpp tests/bench/alloc_counter.cpp -o "$bin" -lbenchmark -lpthread
    fi
    echo "running $bin" >&2
    "$bin" --benchmark_repetitions="$reps" --benchmark_min_time="$min_time" \
      --benchmark_enable_random_interleaving=true --benchmark_format=json >"$bin.json" 2>/dev/null
  done
done
python3 - "$out" <<'EOF'
import json, sys, collections
out = sys.argv[1]
builds = [("g++", "O2"), ("g++", "O3"), ("clang++", "O2"), ("clang++", "O3")]
# row: (label, benchmark, baseline or None for absolute, kind: "diff" | "ratio" | "abs", target)
rows = []
for path, label, base, kind, target in [
    ("no_policy", "`resilient`, no policy", "bare_call", "diff", "±0.3 ns"),
    ("retry_happy", "retry, happy path", "bare_call", "diff", "≤ +1.5 ns"),
    ("breaker_closed_consecutive", "closed breaker, consecutive", "bare_call", "diff", "≤ +5 ns"),
    ("breaker_closed_count_window", "closed breaker, count window", "bare_call", "diff", "≤ +5 ns"),
    ("breaker_closed_time_window", "closed breaker, time window", "bare_call_and_now", "diff", "≤ +5 ns over 1 clock read"),
    ("breaker_closed_slow_calls", "closed breaker, slow-call tracking", "bare_call_and_two_now", "diff", "≤ +5 ns over 2 clock reads"),
    ("breaker_open_rejection", "open breaker, rejection via `try_call`", None, "abs", "≤ 20 ns"),
    ("five_policies", "5 policies (fallback, retry, breaker, rate limit, cooperative timeout)", None, "abs", "≤ 100 ns"),
]:
    for k in ("fn_ptr", "lambda"):
        rows.append((f"{label} ({'function pointer' if k == 'fn_ptr' else 'lambda'})", f"{path}/{k}", base, kind, target))
rows.append(("per-tenant `try_acquire` vs the key's own", "limiter_tenant_try_acquire", "limiter_plain_try_acquire", "ratio", "≤ 2×"))
rows.append(("floor: one `steady_clock::now()`", "steady_clock_now", None, "abs", ""))
rows.append(("floor: bare call + one atomic increment", "bare_call_and_atomic_increment", "bare_call", "diff", ""))

def load(path):
    best, allocs = {}, collections.defaultdict(float)
    for b in json.load(open(path))["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        n = b["run_name"]
        best[n] = min(best.get(n, float("inf")), b["cpu_time"])
        allocs[n] = max(allocs[n], b.get("allocs_per_call", 0.0))
    return best, allocs

data = {bld: load(f"{out}/hot_paths_{bld[0]}_{bld[1]}.json") for bld in builds}
print("| path | " + " | ".join(f"{c} -{o}" for c, o in builds) + " | target |")
print("|---|" + "---:|" * len(builds) + "---|")
for label, name, base, kind, target in rows:
    cells = []
    for bld in builds:
        best, allocs = data[bld]
        v = best[name]
        if kind == "diff":
            cell = f"{v - best[base]:+.1f} ns"
        elif kind == "ratio":
            cell = f"{v / best[base]:.2f}× ({v:.0f} / {best[base]:.0f} ns)"
        else:
            cell = f"{v:.1f} ns"
        if allocs[name] > 0.001:
            cell += f", {allocs[name]:.2g} allocs"
        cells.append(cell)
    print(f"| {label} | " + " | ".join(cells) + f" | {target} |")
bare = ", ".join(f"{c} -{o} {data[(c, o)][0]['bare_call']:.2f} ns" for c, o in builds)
print(f"\nBaseline bare call (a noinline function): {bare}. CPU time of the fastest of {sys.argv[1] and ''}the repetitions.")
EOF
