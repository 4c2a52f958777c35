// What observability costs on the hot path: a closed circuit breaker's call
// bare, with a metrics registry watching it (scrape-time reads only), and
// with the call-duration histogram (the breaker times each call); the event
// path with and without listeners; and a scrape.
#include <resilience/bulkhead.hpp>
#include <resilience/circuit_breaker.hpp>
#include <resilience/metrics.hpp>
#include <resilience/rate_limit.hpp>
#include <resilience/timeout.hpp>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "baselines.hpp"

using namespace resilience;

namespace {

BENCHMARK(bench::bare_call);
BENCHMARK(bench::steady_clock_now);

// A closed breaker's call; `durations` (when set) is how a registry watches it.
void breaker_call(benchmark::State& state, const circuit_breaker_options& options,
                  std::optional<call_durations> durations) {
  circuit_breaker cb{options};
  metrics_registry m{{.count_global_events = false}};
  if (durations) m.watch(cb, *durations);
  int x = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    auto r = cb.try_call(bench::opaque_call, x);
    benchmark::DoNotOptimize(x = r.value());
  }
  a.report(state);
}

const circuit_breaker_options consecutive{.name = "factor_api"};
void breaker_no_metrics(benchmark::State& s) { breaker_call(s, consecutive, std::nullopt); }
void breaker_with_metrics(benchmark::State& s) { breaker_call(s, consecutive, call_durations::when_timed); }
void breaker_with_metrics_and_durations(benchmark::State& s) { breaker_call(s, consecutive, call_durations::always); }
BENCHMARK(breaker_no_metrics);
BENCHMARK(breaker_with_metrics);
BENCHMARK(breaker_with_metrics_and_durations);

// The same histogram on a coarse clock (CLOCK_MONOTONIC_COARSE, kernel-tick
// resolution): cheaper timing for services whose calls take milliseconds.
void breaker_with_durations_coarse_clock(benchmark::State& s) {
  breaker_call(s, {.name = "factor_api", .clock = coarse_clock()}, call_durations::always);
}
BENCHMARK(breaker_with_durations_coarse_clock);

// A breaker that times its calls anyway (slow-call tracking in a count
// window): the default watch feeds the histogram from those two clock reads,
// so the histogram costs only its update.
const circuit_breaker_options slow_call_tracking{
    .name = "llm_api", .window = breaker_window::count_based, .slow_call_duration = std::chrono::seconds{20}};
void slow_call_breaker_no_metrics(benchmark::State& s) { breaker_call(s, slow_call_tracking, std::nullopt); }
void slow_call_breaker_with_durations(benchmark::State& s) {
  breaker_call(s, slow_call_tracking, call_durations::when_timed);
}
BENCHMARK(slow_call_breaker_no_metrics);
BENCHMARK(slow_call_breaker_with_durations);

void histogram_observe(benchmark::State& state) {
  duration_histogram h;
  std::int64_t ns = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    h.observe(duration{ns});
    ns = (ns + 7'919'000) % 70'000'000'000;
  }
  a.report(state);
}
BENCHMARK(histogram_observe);

// An event nobody listens to: the cost every policy pays when observability is off.
void emit_unobserved(benchmark::State& state) {
  event_hub hub;
  bench::alloc_scope a;
  for (auto _ : state)
    detail::emit(&hub, [] {
      event e{timeout_occurred_event};
      e.with_operation("database").with("limit", duration{std::chrono::seconds{10}});
      return e;
    });
  a.report(state);
}
BENCHMARK(emit_unobserved);

// An event counted by a registry (a rejection under overload, say).
void emit_counted(benchmark::State& state) {
  struct owner {
    std::shared_ptr<event_hub> hub = std::make_shared<event_hub>();
    event_hub& events() const noexcept { return *hub; }
  } policy;
  metrics_registry m{{.count_global_events = false}};
  m.count_events_of(policy);
  bench::alloc_scope a;
  for (auto _ : state)
    detail::emit(&policy.events(), [] {
      event e{bulkhead_rejected_event, "database"};
      e.with("max_concurrent_calls", 10);
      return e;
    });
  a.report(state);
}
BENCHMARK(emit_counted);

// The timed part of every scrape benchmark: render into one reused buffer.
void scrape(benchmark::State& state, const metrics_registry& m) {
  std::string out;
  for (auto _ : state) {
    out.clear();
    m.render(out);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["bytes"] = static_cast<double>(out.size());
}

// A full scrape: 10 breakers with histograms, 10 limiter keys, every family.
void render_scrape(benchmark::State& state) {
  rate_limiter limits;  // outlives the registry watching it
  metrics_registry m{{.count_global_events = false}};
  std::vector<circuit_breaker> breakers;
  for (int i = 0; i < 10; ++i) {
    breakers.emplace_back(circuit_breaker_options{.name = "service_" + std::to_string(i)});
    m.watch(breakers.back(), call_durations::always);
    limits.configure("key_" + std::to_string(i), {.requests_per_second = 10, .burst_size = 20});
  }
  m.watch(limits);
  scrape(state, m);
}
BENCHMARK(render_scrape);

// A scrape of many series (issue 11, item 15: 32 k limiter keys took 2.2 s,
// 32 k breakers 5.3 s, when render searched linearly per series). The
// argument is the number of keys or breakers: time per series should stay
// flat as it grows (linear render); the target is <= 50 ms at 32 k.
void render_many_limiter_keys(benchmark::State& state) {
  rate_limiter limits;
  metrics_registry m{{.count_global_events = false}};
  m.watch(limits);
  for (std::int64_t i = 0; i < state.range(0); ++i) {
    const std::string key = "tenant_key_" + std::to_string(i);
    limits.configure(key, {.requests_per_second = 1, .burst_size = 1});
    // A violation per key: its event-derived series must be matched against the watched one.
    for (int k = 0; k < 2; ++k) (void)limits.try_acquire(key);
  }
  scrape(state, m);
  state.SetComplexityN(state.range(0));
}
BENCHMARK(render_many_limiter_keys)
    ->RangeMultiplier(4)
    ->Range(2048, 32768)
    ->Unit(benchmark::kMillisecond)
    ->Complexity();

void render_many_breakers(benchmark::State& state) {
  circuit_breaker_registry breakers;
  metrics_registry m;  // global events: each breaker's transition is counted from its event too
  m.watch(breakers, call_durations::never);
  for (std::int64_t i = 0; i < state.range(0); ++i) {
    auto cb = breakers.get_or_create("service_" + std::to_string(i), {.fail_max = 1});
    (void)cb.try_call([]() -> int { throw std::runtime_error{"down"}; });  // opens: a transition
  }
  scrape(state, m);
  state.SetComplexityN(state.range(0));
}
BENCHMARK(render_many_breakers)->RangeMultiplier(4)->Range(2048, 32768)->Unit(benchmark::kMillisecond)->Complexity();

}  // namespace
BENCHMARK_MAIN();
