// Bulkhead overhead against a bare call, the two atomics any shared-counter
// bulkhead needs, and a std::mutex-guarded counter, measured in the same run.
#include <resilience/bulkhead.hpp>
#include <resilience/resilient.hpp>

#include <benchmark/benchmark.h>

#include "baselines.hpp"

using namespace resilience;

namespace {

BENCHMARK(bench::bare_call);
BENCHMARK(bench::call_and_atomic_increment);
BENCHMARK(bench::call_between_fetch_add_and_fetch_sub);

void permit_then_call(benchmark::State& state) {
  bulkhead b{{.name = "reports", .max_concurrent_calls = 4}};
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    auto permit = b.try_acquire();
    benchmark::DoNotOptimize(bench::opaque_call(++i));
  }
  a.report(state);
}
BENCHMARK(permit_then_call);

void resilient_try_call(benchmark::State& state) {
  bulkhead b{{.name = "reports", .max_concurrent_calls = 4}};
  resilient render{bench::opaque_call, b};
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    ++i;
    benchmark::DoNotOptimize(render.try_call(i));
  }
  a.report(state);
}
BENCHMARK(resilient_try_call);

void full_rejection_try_call(benchmark::State& state) {
  bulkhead b{{.name = "reports", .max_concurrent_calls = 1}};
  resilient render{bench::opaque_call, b};
  auto held = b.try_acquire();
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    ++i;
    benchmark::DoNotOptimize(render.try_call(i));
  }
  a.report(state);
}
BENCHMARK(full_rejection_try_call);

bulkhead& shared_bulkhead() {
  static bulkhead b{{.name = "shared", .max_concurrent_calls = 8}};
  return b;
}

void two_threads_bulkhead(benchmark::State& state) {
  auto& b = shared_bulkhead();
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    auto permit = b.try_acquire();
    benchmark::DoNotOptimize(bench::opaque_call(++i));
  }
  a.report(state);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(two_threads_bulkhead)->Threads(2)->UseRealTime();

// A bulkhead built on a mutex-guarded count, for the two-thread comparison.
BENCHMARK(bench::call_inside_mutex_counter)->Threads(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
