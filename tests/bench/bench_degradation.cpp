// The degradation guard's cost on the call path: admitted, rejected, and
// served from its fallback, against a bare call and the primitives it is
// built from (an atomic load; a mutex, which it does not take).
#include <resilience/degradation.hpp>
#include <resilience/resilient.hpp>

#include <benchmark/benchmark.h>

#include <chrono>

#include "baselines.hpp"

namespace {

using namespace resilience;

BENCHMARK(bench::bare_call);

void baseline_resilient_no_policy(benchmark::State& state) {
  resilient f{bench::opaque_call};
  bench::alloc_scope a;
  int x = 0;
  for (auto _ : state) benchmark::DoNotOptimize(x = f.try_call(x).value_or(0));
  a.report(state);
}
BENCHMARK(baseline_resilient_no_policy);
BENCHMARK(bench::atomic_load);
BENCHMARK(bench::mutex_lock_unlock);

void guard_admitted(benchmark::State& state) {
  degradation_manager m;
  resilient f{bench::opaque_call, degradation_guard{m, tier::core}};
  bench::alloc_scope a;
  int x = 0;
  for (auto _ : state) benchmark::DoNotOptimize(x = f.try_call(x).value_or(0));
  a.report(state);
}
BENCHMARK(guard_admitted);

void guard_rejected(benchmark::State& state) {
  degradation_manager m{{.recover_after_reports = 1}};
  m.update_health("database", false);
  resilient f{bench::opaque_call, degradation_guard{m, tier::core}};
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
  resilient f{bench::opaque_call, degradation_guard{m, tier::core, -1}};
  bench::alloc_scope a;
  int x = 0;
  for (auto _ : state) benchmark::DoNotOptimize(x = f.try_call(x).value_or(0));
  a.report(state);
}
BENCHMARK(guard_fallback_value);

void guard_admitted_threads(benchmark::State& state) {
  static degradation_manager m;
  static const resilient f{bench::opaque_call, degradation_guard{m, tier::core}};
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
