// The hot paths of issue #13, each with the protected call given as a
// function pointer and as a lambda, against baselines of the same run.
// tests/bench/hot_path_matrix.sh builds this one program with g++ and clang++
// at -O2 and -O3 and prints one table; it is also a normal bench target.
//
// Names: <path>/<callable kind>; the script knows each row's baseline.
#include <resilience/circuit_breaker.hpp>
#include <resilience/fallback.hpp>
#include <resilience/rate_limit.hpp>
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>
#include <resilience/timeout.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "baselines.hpp"

using namespace resilience;
using namespace std::chrono_literals;

namespace {

// The two ways a user hands over the protected call.
using fn_ptr = int (*)(int);
const fn_ptr pointer = bench::opaque_call;
const auto lambda = [](int x) { return bench::opaque_call(x); };

[[gnu::noinline]] int failing_call(int) { throw std::runtime_error{"factor service down"}; }

// Runs `wrapped.try_call(i)` in the loop, with allocations counted.
template <class Wrapped>
void run_try_call(benchmark::State& state, const Wrapped& wrapped) {
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    auto r = wrapped.try_call(++i);
    benchmark::DoNotOptimize(r);
  }
  a.report(state);
}

// Baselines beyond baselines.hpp: the call plus the clock reads a timed mode needs.
void bare_call_and_now(benchmark::State& state) {
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    benchmark::DoNotOptimize(std::chrono::steady_clock::now());
    benchmark::DoNotOptimize(bench::opaque_call(++i));
  }
  a.report(state);
}

void bare_call_and_two_now(benchmark::State& state) {
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    benchmark::DoNotOptimize(std::chrono::steady_clock::now());
    benchmark::DoNotOptimize(bench::opaque_call(++i));
    benchmark::DoNotOptimize(std::chrono::steady_clock::now());
  }
  a.report(state);
}

template <class F>
void no_policy(benchmark::State& state, F f) {
  const resilient wrapped{f};
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(wrapped(++i));
  a.report(state);
}

template <class F>
void retry_happy(benchmark::State& state, F f) {
  const resilient wrapped{f, retry{}};
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(wrapped(++i));
  a.report(state);
}

template <class F>
void breaker_closed_consecutive(benchmark::State& state, F f) {
  run_try_call(state, resilient{f, circuit_breaker{{.name = "factor_api"}}});
}

template <class F>
void breaker_closed_count_window(benchmark::State& state, F f) {
  run_try_call(state, resilient{f, circuit_breaker{{.name = "factor_api", .window = breaker_window::count_based}}});
}

template <class F>
void breaker_closed_time_window(benchmark::State& state, F f) {
  run_try_call(state, resilient{f, circuit_breaker{{.name = "factor_api", .window = breaker_window::time_based}}});
}

template <class F>
void breaker_closed_slow_calls(benchmark::State& state, F f) {
  run_try_call(
      state,
      resilient{
          f, circuit_breaker{{.name = "factor_api", .window = breaker_window::count_based, .slow_call_duration = 1s}}});
}

template <class F>
void breaker_open_rejection(benchmark::State& state, F f) {
  circuit_breaker cb{{.name = "factor_api"}};
  const resilient failing{failing_call, cb};
  for (int k = 0; k < 5; ++k) (void)failing.try_call(k);
  if (cb.state() != circuit_state::open) state.SkipWithError("the breaker did not open");
  run_try_call(state, resilient{f, cb});
}

// fallback, retry, circuit breaker, rate limit, cooperative timeout (the
// presets' order), a callable that takes no stop_token.
template <class F>
void five_policies(benchmark::State& state, F f) {
  static rate_limiter limits;
  limits.configure("factor_api", {.requests_per_second = 1e9, .burst_size = 1'000'000});
  run_try_call(state,
               resilient{f, fallback{default_value{0}}, retry{}, circuit_breaker{{.name = "factor_api"}},
                         rate_limit{limits, "factor_api"}, timeout{{.limit = 5s, .mode = timeout_mode::cooperative}}});
}

rate_limiter& tenant_registry() {
  static rate_limiter reg;
  static const bool configured = [] {
    reg.configure("factor_api", {.requests_per_second = 1e9, .burst_size = 1'000'000});
    return true;
  }();
  (void)configured;
  return reg;
}

void limiter_plain_try_acquire(benchmark::State& state) {
  auto& reg = tenant_registry();
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(reg.try_acquire("factor_api"));
  a.report(state);
}

void limiter_tenant_try_acquire(benchmark::State& state) {
  auto& reg = tenant_registry();
  std::vector<std::string> tenants;
  for (int i = 0; i < 1000; ++i) tenants.push_back("tenant-" + std::to_string(i));
  for (const auto& t : tenants) (void)reg.try_acquire("factor_api", t);  // created before measuring
  std::size_t i = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    benchmark::DoNotOptimize(reg.try_acquire("factor_api", tenants[i]));
    i = (i + 1) % tenants.size();
  }
  a.report(state);
}

#define RESILIENCE_BOTH_KINDS(path)                                \
  BENCHMARK_CAPTURE(path, fn_ptr, pointer)->Name(#path "/fn_ptr"); \
  BENCHMARK_CAPTURE(path, lambda, lambda)->Name(#path "/lambda")

BENCHMARK(bench::bare_call)->Name("bare_call");
BENCHMARK(bench::steady_clock_now)->Name("steady_clock_now");
BENCHMARK(bench::call_and_atomic_increment)->Name("bare_call_and_atomic_increment");
BENCHMARK(bare_call_and_now);
BENCHMARK(bare_call_and_two_now);
RESILIENCE_BOTH_KINDS(no_policy);
RESILIENCE_BOTH_KINDS(retry_happy);
RESILIENCE_BOTH_KINDS(breaker_closed_consecutive);
RESILIENCE_BOTH_KINDS(breaker_closed_count_window);
RESILIENCE_BOTH_KINDS(breaker_closed_time_window);
RESILIENCE_BOTH_KINDS(breaker_closed_slow_calls);
RESILIENCE_BOTH_KINDS(breaker_open_rejection);
RESILIENCE_BOTH_KINDS(five_policies);
BENCHMARK(limiter_plain_try_acquire);
BENCHMARK(limiter_tenant_try_acquire);

}  // namespace

BENCHMARK_MAIN();
