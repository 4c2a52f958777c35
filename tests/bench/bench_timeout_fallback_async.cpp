// Timeout, fallback and async() costs, each next to its baseline in the same run.
#include <benchmark/benchmark.h>

#include <resilience/cache.hpp>
#include <resilience/executor.hpp>
#include <resilience/fallback.hpp>
#include <resilience/resilient.hpp>
#include <resilience/timeout.hpp>

#include <chrono>
#include <stop_token>
#include <string>

#include "baselines.hpp"

using namespace resilience;
using namespace std::chrono_literals;

namespace {

[[gnu::noinline]] int lookup_stoppable(std::stop_token, int x) { return x * 3 + 1; }
[[gnu::noinline]] double factor(const std::string& activity) { return static_cast<double>(activity.size()) * 0.1; }

BENCHMARK(bench::bare_call);
BENCHMARK(bench::steady_clock_now);

// What a stop-aware callable costs before any timeout: a token of a live
// source is copied into the call (two reference-count updates).
void BM_bare_call_with_live_token(benchmark::State& state) {
  std::stop_source source;
  const std::stop_token token = source.get_token();
  int x = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(lookup_stoppable(token, ++x));
  a.report(state);
}
BENCHMARK(BM_bare_call_with_live_token);

// The floor of any timeout that hands the callable a fresh std::stop_token:
// the stop source's shared state (one allocation) and its reference counts.
void BM_stop_source_floor(benchmark::State& state) {
  bench::alloc_scope a;
  for (auto _ : state) {
    std::stop_source source;
    std::stop_token token = source.get_token();
    benchmark::DoNotOptimize(token);
  }
  a.report(state);
}
BENCHMARK(BM_stop_source_floor);

// Everything a cooperative timeout with a stop-aware callable cannot avoid,
// without any timer: one clock read, a fresh stop source and token, and
// the token copied into the call.
void BM_stop_aware_timeout_floor(benchmark::State& state) {
  int x = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    benchmark::DoNotOptimize(std::chrono::steady_clock::now());
    std::stop_source source;
    const std::stop_token token = source.get_token();
    benchmark::DoNotOptimize(lookup_stoppable(token, ++x));
  }
  a.report(state);
}
BENCHMARK(BM_stop_aware_timeout_floor);

void BM_timeout_cooperative(benchmark::State& state) {
  resilient r{lookup_stoppable, timeout{5s}};
  int x = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(r(++x));
  a.report(state);
}
BENCHMARK(BM_timeout_cooperative);

void BM_timeout_cooperative_no_stop_token(benchmark::State& state) {
  resilient r{bench::opaque_call, timeout{{.limit = 5s, .mode = timeout_mode::cooperative}}};
  int x = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(r(++x));
  a.report(state);
}
BENCHMARK(BM_timeout_cooperative_no_stop_token);

void BM_timeout_detached(benchmark::State& state) {
  thread_pool pool{1};
  resilient r{bench::opaque_call, timeout{{.limit = 5s, .mode = timeout_mode::detached}}};
  r.with_executor(pool);
  int x = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(r(++x));
  a.report(state);
}
BENCHMARK(BM_timeout_detached)->UseRealTime();
BENCHMARK(BM_timeout_detached)->UseRealTime()->MeasureProcessCPUTime();

BENCHMARK(bench::std_async_round_trip)->UseRealTime();
BENCHMARK(bench::std_async_round_trip)->UseRealTime()->MeasureProcessCPUTime();

void BM_fallback_happy_path(benchmark::State& state) {
  resilient r{bench::opaque_call, fallback{default_value{0}}};
  int x = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(r(++x));
  a.report(state);
}
BENCHMARK(BM_fallback_happy_path);

void BM_bare_factor(benchmark::State& state) {
  const std::string activity{"electricity"};
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(factor(activity));
  a.report(state);
}
BENCHMARK(BM_bare_factor);

void BM_cached_fallback_happy_path(benchmark::State& state) {
  result_cache<std::string, double> cache;
  resilient r{factor, fallback{cached{cache}}};
  const std::string activity{"electricity"};
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(r(activity));  // includes the cache write
  a.report(state);
}
BENCHMARK(BM_cached_fallback_happy_path);

void BM_async_round_trip(benchmark::State& state) {
  thread_pool pool{1};
  resilient r{bench::opaque_call};
  r.with_executor(pool);
  int x = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(r.async(++x).get());
  a.report(state);
}
BENCHMARK(BM_async_round_trip)->UseRealTime();
BENCHMARK(BM_async_round_trip)->UseRealTime()->MeasureProcessCPUTime();

void BM_async_round_trip_with_timeout_and_fallback(benchmark::State& state) {
  thread_pool pool{1};
  resilient r{bench::opaque_call, fallback{default_value{0}}, timeout{5s}};
  r.with_executor(pool);
  int x = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(r.async(++x).get());
  a.report(state);
}
BENCHMARK(BM_async_round_trip_with_timeout_and_fallback)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
