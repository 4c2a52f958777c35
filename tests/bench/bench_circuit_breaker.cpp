// Circuit breaker overhead against its baselines, measured in the same run:
// a bare call, one steady_clock::now(), and (for two threads) a
// std::mutex-guarded counter.
#include <resilience/circuit_breaker.hpp>
#include <resilience/resilient.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <stdexcept>

#include "baselines.hpp"

using namespace resilience;
using namespace std::chrono_literals;

namespace {

BENCHMARK(bench::bare_call);
BENCHMARK(bench::call_and_atomic_increment);
BENCHMARK(bench::steady_clock_now);

[[gnu::noinline]] int failing_lookup(int) { throw std::runtime_error{"factor service down"}; }

void closed_consecutive_call(benchmark::State& state) {
  circuit_breaker cb{{.name = "factor_api"}};
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(cb.call(bench::opaque_call, ++i));
  a.report(state);
}
BENCHMARK(closed_consecutive_call);

void closed_consecutive_resilient_try_call(benchmark::State& state) {
  circuit_breaker cb{{.name = "factor_api"}};
  resilient fetch{bench::opaque_call, cb};
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
  for (auto _ : state) benchmark::DoNotOptimize(cb.call(bench::opaque_call, ++i));
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
    benchmark::DoNotOptimize(bench::opaque_call(++i));
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
    benchmark::DoNotOptimize(bench::opaque_call(++i));
  }
  a.report(state);
}
BENCHMARK(closed_count_window_scope);

void closed_time_window_call(benchmark::State& state) {
  circuit_breaker cb{{.name = "factor_api", .window = breaker_window::time_based}};
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(cb.call(bench::opaque_call, ++i));
  a.report(state);
}
BENCHMARK(closed_time_window_call);

void closed_slow_call_tracking(benchmark::State& state) {
  circuit_breaker cb{{.name = "factor_api", .window = breaker_window::count_based, .slow_call_duration = 1s}};
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(cb.call(bench::opaque_call, ++i));
  a.report(state);
}
BENCHMARK(closed_slow_call_tracking);

void open_rejection_try_call(benchmark::State& state) {
  circuit_breaker cb{{.name = "factor_api", .break_duration = 1h}};
  resilient fetch{bench::opaque_call, cb};
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
  for (auto _ : state) benchmark::DoNotOptimize(cb.call(bench::opaque_call, ++i));
  a.report(state);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(two_threads_breaker)->Threads(2)->UseRealTime();

BENCHMARK(bench::call_and_mutex_counter)->Threads(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
