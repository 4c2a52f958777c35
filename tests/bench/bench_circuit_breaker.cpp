// Circuit breaker overhead against its baselines, measured in the same run:
// a bare call, one steady_clock::now(), and (for two threads) a
// std::mutex-guarded counter.
#include <resilience/circuit_breaker.hpp>
#include <resilience/resilient.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <atomic>
#include <mutex>
#include <stdexcept>

#include "alloc_counter.hpp"

using namespace resilience;
using namespace std::chrono_literals;

namespace {

// The protected call: opaque to the optimizer, so every variant pays for it once.
[[gnu::noinline]] int lookup_factor(int activity) {
  benchmark::DoNotOptimize(activity);
  return activity + 1;
}

[[gnu::noinline]] int failing_lookup(int) { throw std::runtime_error{"factor service down"}; }

void bare_call(benchmark::State& state) {
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(lookup_factor(++i));
  a.report(state);
}
BENCHMARK(bare_call);

// The floor of any shared counter: one relaxed atomic increment after the call.
std::atomic<long> increments{0};
void call_and_atomic_increment(benchmark::State& state) {
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    benchmark::DoNotOptimize(lookup_factor(++i));
    increments.fetch_add(1, std::memory_order_relaxed);
  }
  a.report(state);
}
BENCHMARK(call_and_atomic_increment);

void steady_clock_now(benchmark::State& state) {
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(std::chrono::steady_clock::now());
  a.report(state);
}
BENCHMARK(steady_clock_now);

void closed_consecutive_call(benchmark::State& state) {
  circuit_breaker cb{{.name = "factor_api"}};
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(cb.call(lookup_factor, ++i));
  a.report(state);
}
BENCHMARK(closed_consecutive_call);

void closed_consecutive_resilient_try_call(benchmark::State& state) {
  circuit_breaker cb{{.name = "factor_api"}};
  resilient fetch{lookup_factor, cb};
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    ++i;
    benchmark::DoNotOptimize(fetch.try_call(i));
  }
  a.report(state);
}
BENCHMARK(closed_consecutive_resilient_try_call);

void closed_count_window_call(benchmark::State& state) {
  circuit_breaker cb{{.name = "factor_api", .window = breaker_window::count_based}};
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(cb.call(lookup_factor, ++i));
  a.report(state);
}
BENCHMARK(closed_count_window_call);

// The same window, holding a failure most of the time (one call in 64
// fails), so that a success also looks up the slot it replaces. Through a
// scope, since a failure through call() would cost an exception; the cost
// includes 1/64 of a failure's.
void closed_count_window_with_failures(benchmark::State& state) {
  circuit_breaker cb{{.name = "factor_api", .window = breaker_window::count_based}};
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    auto scope = cb.enter();
    benchmark::DoNotOptimize(lookup_factor(++i));
    if ((i & 63) == 0) scope.failure();
  }
  if (cb.state() != circuit_state::closed) state.SkipWithError("breaker opened");
  a.report(state);
}
BENCHMARK(closed_count_window_with_failures);

void closed_count_window_scope(benchmark::State& state) {
  circuit_breaker cb{{.name = "factor_api", .window = breaker_window::count_based}};
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    auto scope = cb.enter();
    benchmark::DoNotOptimize(lookup_factor(++i));
  }
  a.report(state);
}
BENCHMARK(closed_count_window_scope);

void closed_time_window_call(benchmark::State& state) {
  circuit_breaker cb{{.name = "factor_api", .window = breaker_window::time_based}};
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(cb.call(lookup_factor, ++i));
  a.report(state);
}
BENCHMARK(closed_time_window_call);

void closed_slow_call_tracking(benchmark::State& state) {
  circuit_breaker cb{{.name = "factor_api", .window = breaker_window::count_based, .slow_call_duration = 1s}};
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(cb.call(lookup_factor, ++i));
  a.report(state);
}
BENCHMARK(closed_slow_call_tracking);

void open_rejection_try_call(benchmark::State& state) {
  circuit_breaker cb{{.name = "factor_api", .timeout_duration = 1h}};
  resilient fetch{lookup_factor, cb};
  resilient failing{failing_lookup, cb};
  for (int k = 0; k < 5; ++k) (void)failing.try_call(k);
  if (cb.state() != circuit_state::open) state.SkipWithError("breaker did not open");
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    ++i;
    benchmark::DoNotOptimize(fetch.try_call(i));
  }
  a.report(state);
}
BENCHMARK(open_rejection_try_call);

circuit_breaker& shared_breaker() {
  static circuit_breaker cb{{.name = "shared"}};
  return cb;
}

void two_threads_breaker(benchmark::State& state) {
  auto& cb = shared_breaker();
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(cb.call(lookup_factor, ++i));
  a.report(state);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(two_threads_breaker)->Threads(2)->UseRealTime();

std::mutex counter_mutex;
long counter = 0;

void two_threads_mutex_counter(benchmark::State& state) {
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    benchmark::DoNotOptimize(lookup_factor(++i));
    std::lock_guard lock{counter_mutex};
    ++counter;
  }
  a.report(state);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(two_threads_mutex_counter)->Threads(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
