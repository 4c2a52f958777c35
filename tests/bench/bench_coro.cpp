// Coroutine and async round-trip costs, each next to its baseline in the same run:
//  - co_call that completes without suspending vs co_await-ing the call directly,
//    in the same coroutine (one coroutine runs the whole benchmark loop);
//  - co_call with one executor hop (the coroutine resumes on a pool thread)
//    vs a bare post to the same pool;
//  - resilient_function vs the same resilient called directly;
//  - async() round trip (submit, get()) through resilience::future and, as
//    before, through std::future, vs std::async.
#include <benchmark/benchmark.h>

#include <resilience/circuit_breaker.hpp>
#include <resilience/coro.hpp>
#include <resilience/executor.hpp>
#include <resilience/fallback.hpp>
#include <resilience/resilient.hpp>
#include <resilience/resilient_function.hpp>
#include <resilience/retry.hpp>

#include <atomic>
#include <coroutine>
#include <exception>
#include <future>
#include <thread>

#include "../support/coro.hpp"
#include "baselines.hpp"

using namespace resilience;

namespace {

using support::spawned;  // a coroutine that starts at once and frees itself at the end

// The baseline awaitable: the call's value, ready at once.
struct ready_call {
  int x;
  bool await_ready() const noexcept { return true; }
  void await_suspend(std::coroutine_handle<>) const noexcept {}
  int await_resume() const { return bench::opaque_call(x); }
};

spawned direct_loop(benchmark::State& state) {
  int x = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(co_await ready_call{++x});
  a.report(state);
}
void BM_co_await_call_directly(benchmark::State& state) { direct_loop(state); }
BENCHMARK(BM_co_await_call_directly);

template <class R>
spawned co_call_loop(benchmark::State& state, const R& r) {
  int x = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(co_await r.co_call(++x));
  a.report(state);
}

void BM_co_call_no_policy(benchmark::State& state) {
  const resilient r{bench::opaque_call};
  co_call_loop(state, r);
}
BENCHMARK(BM_co_call_no_policy);

void BM_co_call_fallback_and_breaker(benchmark::State& state) {
  circuit_breaker breaker{{.fail_max = 5}};
  const resilient r{bench::opaque_call, fallback{default_value{0}}, breaker};
  co_call_loop(state, r);
}
BENCHMARK(BM_co_call_fallback_and_breaker);

void BM_sync_fallback_and_breaker(benchmark::State& state) {
  circuit_breaker breaker{{.fail_max = 5}};
  const resilient r{bench::opaque_call, fallback{default_value{0}}, breaker};
  int x = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(r(++x));
  a.report(state);
}
BENCHMARK(BM_sync_fallback_and_breaker);

// The same resilient (retry, happy path), called directly and through resilient_function.
void BM_resilient_retry_direct(benchmark::State& state) {
  const resilient r{bench::opaque_call, retry{}};
  int x = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(r(++x));
  a.report(state);
}
BENCHMARK(BM_resilient_retry_direct);

void BM_resilient_function_retry(benchmark::State& state) {
  const resilient_function<int(int)> f = resilient{bench::opaque_call, retry{}};
  int x = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(f(++x));
  a.report(state);
}
BENCHMARK(BM_resilient_function_retry);

// Spins until `done` reaches `expected`, yielding after a few pauses so that
// the pool thread runs even when it shares this core (the library's own waits do so).
void wait_for(const std::atomic<int>& done, int expected) {
  for (unsigned i = 0; done.load(std::memory_order_acquire) != expected; ++i) {
    if (i < 8) detail::cpu_relax();
    else std::this_thread::yield();
  }
}

// The floor of any executor hop: post a task to a one-thread pool, spin until it ran.
void BM_pool_post_round_trip(benchmark::State& state) {
  thread_pool pool{1};
  std::atomic<int> done{0};
  int expected = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    pool.post([&done] { done.fetch_add(1, std::memory_order_release); });
    ++expected;
    wait_for(done, expected);
  }
  a.report(state);
}
BENCHMARK(BM_pool_post_round_trip)->UseRealTime();

spawned hop_once(const resilient<int (*)(int), retry>& r, int x, std::atomic<int>& done) {
  benchmark::DoNotOptimize(co_await r.co_call(x));
  done.fetch_add(1, std::memory_order_release);
}

// A coroutine started here awaits a call posted to the pool and resumes on
// the pool thread; this thread waits (spinning) for it to end.
void BM_co_call_executor_hop(benchmark::State& state) {
  thread_pool pool{1};
  resilient<int (*)(int), retry> r{bench::opaque_call, retry{}};
  r.with_executor(pool);
  std::atomic<int> done{0};
  int expected = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    hop_once(r, ++expected, done);
    wait_for(done, expected);
  }
  a.report(state);
}
BENCHMARK(BM_co_call_executor_hop)->UseRealTime();

BENCHMARK(bench::std_async_round_trip)->UseRealTime();
BENCHMARK(bench::std_async_round_trip)->UseRealTime()->MeasureProcessCPUTime();

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

// The same call waited on as a std::future (how async() returned before).
void BM_async_round_trip_std_future(benchmark::State& state) {
  thread_pool pool{1};
  resilient r{bench::opaque_call};
  r.with_executor(pool);
  int x = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    std::future<int> f = r.async(++x);
    benchmark::DoNotOptimize(f.get());
  }
  a.report(state);
}
BENCHMARK(BM_async_round_trip_std_future)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
