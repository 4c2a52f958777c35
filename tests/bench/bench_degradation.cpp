// The degradation guard's cost on the call path: admitted, rejected, and
// served from its fallback, against a bare call and the primitives it is
// built from (an atomic load; a mutex, which it does not take).
#include <resilience/degradation.hpp>
#include <resilience/resilient.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <mutex>
#include <string>

#include "alloc_counter.hpp"

namespace {

using namespace resilience;

int factor(int x) {
  benchmark::DoNotOptimize(x);
  return x + 1;
}

void baseline_bare_call(benchmark::State& state) {
  bench::alloc_scope a;
  int x = 0;
  for (auto _ : state) benchmark::DoNotOptimize(x = factor(x));
  a.report(state);
}
BENCHMARK(baseline_bare_call);

void baseline_resilient_no_policy(benchmark::State& state) {
  resilient f{factor};
  bench::alloc_scope a;
  int x = 0;
  for (auto _ : state) benchmark::DoNotOptimize(x = f.try_call(x).value_or(0));
  a.report(state);
}
BENCHMARK(baseline_resilient_no_policy);

void baseline_atomic_load(benchmark::State& state) {
  std::atomic<int> v{1};
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(v.load(std::memory_order_acquire));
  a.report(state);
}
BENCHMARK(baseline_atomic_load);

void baseline_mutex(benchmark::State& state) {
  std::mutex m;
  bench::alloc_scope a;
  int x = 0;
  for (auto _ : state) {
    std::lock_guard lock{m};
    benchmark::DoNotOptimize(++x);
  }
  a.report(state);
}
BENCHMARK(baseline_mutex);

void guard_admitted(benchmark::State& state) {
  degradation_manager m;
  resilient f{factor, degradation_guard{m, tier::core}};
  bench::alloc_scope a;
  int x = 0;
  for (auto _ : state) benchmark::DoNotOptimize(x = f.try_call(x).value_or(0));
  a.report(state);
}
BENCHMARK(guard_admitted);

void guard_rejected(benchmark::State& state) {
  degradation_manager m{{.recover_after_reports = 1}};
  m.update_health("database", false);
  resilient f{factor, degradation_guard{m, tier::core}};
  bench::alloc_scope a;
  int x = 0;
  for (auto _ : state) {
    auto r = f.try_call(x);
    benchmark::DoNotOptimize(r);
  }
  a.report(state);
}
BENCHMARK(guard_rejected);

void guard_fallback_value(benchmark::State& state) {
  degradation_manager m{{.recover_after_reports = 1}};
  m.update_health("database", false);
  resilient f{factor, degradation_guard{m, tier::core, -1}};
  bench::alloc_scope a;
  int x = 0;
  for (auto _ : state) benchmark::DoNotOptimize(x = f.try_call(x).value_or(0));
  a.report(state);
}
BENCHMARK(guard_fallback_value);

void guard_admitted_threads(benchmark::State& state) {
  static degradation_manager m;
  static const resilient f{factor, degradation_guard{m, tier::core}};
  bench::alloc_scope a;
  int x = 0;
  for (auto _ : state) benchmark::DoNotOptimize(x = f.try_call(x).value_or(0));
  a.report(state);
}
BENCHMARK(guard_admitted_threads)->Threads(2);

void update_health_no_change(benchmark::State& state) {
  degradation_manager m{{.recover_after_reports = 1}};
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(m.update_health("factor_api", true, std::chrono::milliseconds{120}));
  a.report(state);
}
BENCHMARK(update_health_no_change);

}  // namespace

BENCHMARK_MAIN();
