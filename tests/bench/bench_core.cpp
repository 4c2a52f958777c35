// The cost of the wrapper itself on the happy path: a bare call, the same
// call through resilient<> without policies, and through a default retry
// (operator() and try_call), each with allocations per call counted.
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>

#include <benchmark/benchmark.h>

#include "baselines.hpp"

namespace {

// Cheap enough that any overhead shows, opaque enough not to fold away.
struct scale_factor {
  double operator()(double activity) const noexcept { return activity * 0.233 + 1.0; }
};

void bare_call(benchmark::State& state) {
  const scale_factor f;
  double x = 12.5;
  bench::alloc_scope a;
  for (auto _ : state) {
    benchmark::DoNotOptimize(x);
    benchmark::DoNotOptimize(f(x));
  }
  a.report(state);
}
BENCHMARK(bare_call);
BENCHMARK(bench::bare_call);  // the noinline call the other programs measure against

void resilient_no_policies(benchmark::State& state) {
  const resilience::resilient f{scale_factor{}};
  double x = 12.5;
  bench::alloc_scope a;
  for (auto _ : state) {
    benchmark::DoNotOptimize(x);
    benchmark::DoNotOptimize(f(x));
  }
  a.report(state);
}
BENCHMARK(resilient_no_policies);

// The outcome<> machinery alone: one policy that only forwards the call.
struct pass_through {
  template <class Next>
  auto execute(resilience::call_context& ctx, Next&& next) const {
    return next(ctx);
  }
};

void resilient_pass_through_policy(benchmark::State& state) {
  const resilience::resilient f{scale_factor{}, pass_through{}};
  double x = 12.5;
  bench::alloc_scope a;
  for (auto _ : state) {
    benchmark::DoNotOptimize(x);
    benchmark::DoNotOptimize(f(x));
  }
  a.report(state);
}
BENCHMARK(resilient_pass_through_policy);

void resilient_retry(benchmark::State& state) {
  const resilience::resilient f{scale_factor{}, resilience::retry{}};
  double x = 12.5;
  bench::alloc_scope a;
  for (auto _ : state) {
    benchmark::DoNotOptimize(x);
    benchmark::DoNotOptimize(f(x));
  }
  a.report(state);
}
BENCHMARK(resilient_retry);

void resilient_retry_try_call(benchmark::State& state) {
  const resilience::resilient f{scale_factor{}, resilience::retry{}};
  double x = 12.5;
  bench::alloc_scope a;
  for (auto _ : state) {
    benchmark::DoNotOptimize(x);
    auto r = f.try_call(x);
    benchmark::DoNotOptimize(r);
  }
  a.report(state);
}
BENCHMARK(resilient_retry_try_call);

// A retry configured with everything that costs nothing until a call fails:
// filters, predicates, callback, jitter.
void resilient_retry_configured(benchmark::State& state) {
  struct http_error : std::runtime_error {
    using std::runtime_error::runtime_error;
  };
  const resilience::resilient f{
      scale_factor{},
      resilience::retry{{.max_retries = 5,
                         .jitter = resilience::jitter_mode::full,
                         .random = resilience::seeded_random(1),
                         .handle = (resilience::failures::exceptions_if([](const http_error&) { return true; }) |
                                    resilience::failures::rejections())
                                       .except<std::invalid_argument>(),
                         .on_retry = [](int, resilience::duration, const resilience::failure&) {}}}};
  double x = 12.5;
  bench::alloc_scope a;
  for (auto _ : state) {
    benchmark::DoNotOptimize(x);
    benchmark::DoNotOptimize(f(x));
  }
  a.report(state);
}
BENCHMARK(resilient_retry_configured);

}  // namespace

BENCHMARK_MAIN();
