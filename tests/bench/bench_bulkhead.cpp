// Bulkhead overhead against a bare call, the two atomics any shared-counter
// bulkhead needs, and a std::mutex-guarded counter, measured in the same run.
#include <resilience/bulkhead.hpp>
#include <resilience/resilient.hpp>

#include <benchmark/benchmark.h>

#include <atomic>
#include <mutex>

#include "alloc_counter.hpp"

using namespace resilience;

namespace {

[[gnu::noinline]] int render_report(int section) {
  benchmark::DoNotOptimize(section);
  return section + 1;
}

void bare_call(benchmark::State& state) {
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(render_report(++i));
  a.report(state);
}
BENCHMARK(bare_call);

// The floor of any shared counter: one relaxed atomic increment after the call.
std::atomic<long> increments{0};
void call_and_atomic_increment(benchmark::State& state) {
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    benchmark::DoNotOptimize(render_report(++i));
    increments.fetch_add(1, std::memory_order_relaxed);
  }
  a.report(state);
}
BENCHMARK(call_and_atomic_increment);

// The floor of any bulkhead that counts calls in flight in one shared word:
// one fetch_add before the call and one fetch_sub after it.
std::atomic<long> in_flight{0};
void call_between_fetch_add_and_fetch_sub(benchmark::State& state) {
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    in_flight.fetch_add(1, std::memory_order_acquire);
    benchmark::DoNotOptimize(render_report(++i));
    in_flight.fetch_sub(1, std::memory_order_release);
  }
  a.report(state);
}
BENCHMARK(call_between_fetch_add_and_fetch_sub);

void permit_then_call(benchmark::State& state) {
  bulkhead b{{.name = "reports", .max_concurrent_calls = 4}};
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    auto permit = b.try_acquire();
    benchmark::DoNotOptimize(render_report(++i));
  }
  a.report(state);
}
BENCHMARK(permit_then_call);

void resilient_try_call(benchmark::State& state) {
  bulkhead b{{.name = "reports", .max_concurrent_calls = 4}};
  resilient render{render_report, b};
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
  resilient render{render_report, b};
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
    benchmark::DoNotOptimize(render_report(++i));
  }
  a.report(state);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(two_threads_bulkhead)->Threads(2)->UseRealTime();

std::mutex slots_mutex;
int slots_taken = 0;

void two_threads_mutex_counter(benchmark::State& state) {
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    {
      std::lock_guard lock{slots_mutex};
      ++slots_taken;
    }
    benchmark::DoNotOptimize(render_report(++i));
    std::lock_guard lock{slots_mutex};
    --slots_taken;
  }
  a.report(state);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(two_threads_mutex_counter)->Threads(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
