// The baselines every benchmark program measures its policy against, in the
// same run: the protected call alone, a clock read, the atomics and the mutex
// a shared counter needs, and a std::async round trip. One definition each,
// so that "over the bare call" means the same call in every table.
//
//   BENCHMARK(bench::bare_call);
//   BENCHMARK(my_policy_call);  // calls bench::opaque_call through the policy
#pragma once

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <mutex>

#include "alloc_counter.hpp"

namespace bench {

/// The protected call: opaque to the optimizer, so every variant pays for it once.
[[gnu::noinline]] inline int opaque_call(int x) {
  benchmark::DoNotOptimize(x);
  return x + 1;
}

/// The call alone.
inline void bare_call(benchmark::State& state) {
  int i = 0;
  alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(opaque_call(++i));
  a.report(state);
}

/// One std::chrono::steady_clock::now() (what every timed policy reads).
inline void steady_clock_now(benchmark::State& state) {
  alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(std::chrono::steady_clock::now());
  a.report(state);
}

/// The floor of any shared counter: the call, then one relaxed atomic increment.
inline void call_and_atomic_increment(benchmark::State& state) {
  static std::atomic<long> increments{0};
  int i = 0;
  alloc_scope a;
  for (auto _ : state) {
    benchmark::DoNotOptimize(opaque_call(++i));
    increments.fetch_add(1, std::memory_order_relaxed);
  }
  a.report(state);
}

/// The floor of anything counting calls in flight in one shared word: a
/// fetch_add before the call and a fetch_sub after it.
inline void call_between_fetch_add_and_fetch_sub(benchmark::State& state) {
  static std::atomic<long> in_flight{0};
  int i = 0;
  alloc_scope a;
  for (auto _ : state) {
    in_flight.fetch_add(1, std::memory_order_acquire);
    benchmark::DoNotOptimize(opaque_call(++i));
    in_flight.fetch_sub(1, std::memory_order_release);
  }
  a.report(state);
}

/// One acquire load of an atomic (a flag read on the call path).
inline void atomic_load(benchmark::State& state) {
  std::atomic<int> v{1};
  alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(v.load(std::memory_order_acquire));
  a.report(state);
}

/// An uncontended std::mutex lock/unlock around an increment.
inline void mutex_lock_unlock(benchmark::State& state) {
  std::mutex m;
  int x = 0;
  alloc_scope a;
  for (auto _ : state) {
    std::lock_guard lock{m};
    benchmark::DoNotOptimize(++x);
  }
  a.report(state);
}

/// The call, then a std::mutex-guarded shared counter (run with ->Threads(2)
/// for the contended case).
inline void call_and_mutex_counter(benchmark::State& state) {
  static std::mutex counter_mutex;
  static long counter = 0;
  int i = 0;
  alloc_scope a;
  for (auto _ : state) {
    benchmark::DoNotOptimize(opaque_call(++i));
    std::lock_guard lock{counter_mutex};
    ++counter;
  }
  a.report(state);
  state.SetItemsProcessed(state.iterations());
}

/// A mutex-guarded count of calls in flight: lock, increment, unlock, the
/// call, lock, decrement, unlock (a bulkhead built on a mutex).
inline void call_inside_mutex_counter(benchmark::State& state) {
  static std::mutex slots_mutex;
  static int slots_taken = 0;
  int i = 0;
  alloc_scope a;
  for (auto _ : state) {
    {
      std::lock_guard lock{slots_mutex};
      ++slots_taken;
    }
    benchmark::DoNotOptimize(opaque_call(++i));
    std::lock_guard lock{slots_mutex};
    --slots_taken;
  }
  a.report(state);
  state.SetItemsProcessed(state.iterations());
}

/// The call on a new thread and back: std::async(std::launch::async, ...).get()
/// (register with ->UseRealTime(); its CPU time is mostly the other thread's).
inline void std_async_round_trip(benchmark::State& state) {
  int x = 0;
  alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(std::async(std::launch::async, opaque_call, ++x).get());
  a.report(state);
}

/// One uncontended compare-and-swap.
inline void uncontended_cas(benchmark::State& state) {
  std::atomic<std::int64_t> word{0};
  alloc_scope a;
  for (auto _ : state) {
    auto cur = word.load(std::memory_order_acquire);
    benchmark::DoNotOptimize(word.compare_exchange_strong(cur, cur + 1, std::memory_order_acq_rel));
  }
  a.report(state);
}

}  // namespace bench
