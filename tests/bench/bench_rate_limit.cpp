// Rate limiter costs against their baselines, measured in the same run:
// steady_clock::now(), one uncontended compare-and-swap, both together, and a
// std::mutex token bucket. The limiters run with the default config
// (count_grants = false, as when no metrics_registry watches them); the
// `_counted` rows show what counting grants adds.
#include <resilience/rate_limit.hpp>
#include <resilience/resilient.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "baselines.hpp"

using namespace resilience;

namespace {

// The textbook token bucket behind a mutex, floating-point tokens.
class mutex_token_bucket {
 public:
  mutex_token_bucket(double rate, double burst)
      : rate_{rate}, burst_{burst}, tokens_{burst}, last_{std::chrono::steady_clock::now()} {}
  bool try_acquire() {
    std::lock_guard lock{m_};
    const auto now = std::chrono::steady_clock::now();
    tokens_ = std::min(burst_, tokens_ + std::chrono::duration<double>(now - last_).count() * rate_);
    last_ = now;
    if (tokens_ < 1.0) return false;
    tokens_ -= 1.0;
    return true;
  }

 private:
  std::mutex m_;
  double rate_, burst_, tokens_;
  std::chrono::steady_clock::time_point last_;
};

// Always admits: the benchmarks time the grant path (a refusal does no CAS).
constexpr limiter_options fast(rate_limit_algorithm a) {
  return {.requests_per_second = 1e9,
          .burst_size = a == rate_limit_algorithm::sliding_window ? (1 << 20) : 1'000'000'000,
          .algorithm = a};
}

BENCHMARK(bench::steady_clock_now);
BENCHMARK(bench::uncontended_cas);

// The token bucket's target is at most 1.3x this one.
void BM_baseline_now_plus_cas(benchmark::State& state) {
  std::atomic<std::int64_t> word{0};
  bench::alloc_scope a;
  for (auto _ : state) {
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    auto cur = word.load(std::memory_order_acquire);
    benchmark::DoNotOptimize(
        word.compare_exchange_strong(cur, std::max<std::int64_t>(cur, now - 1000) + 1, std::memory_order_acq_rel));
  }
  a.report(state);
}
BENCHMARK(BM_baseline_now_plus_cas);

void BM_baseline_mutex_bucket(benchmark::State& state) {
  static mutex_token_bucket bucket{1e9, 1e9};
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(bucket.try_acquire());
  a.report(state);
}
BENCHMARK(BM_baseline_mutex_bucket);
BENCHMARK(BM_baseline_mutex_bucket)->Threads(2)->UseRealTime();

template <rate_limit_algorithm A>
void BM_try_acquire(benchmark::State& state) {
  static limiter l{fast(A)};
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(l.try_acquire());
  a.report(state);
}
BENCHMARK(BM_try_acquire<rate_limit_algorithm::token_bucket>);
BENCHMARK(BM_try_acquire<rate_limit_algorithm::leaky_bucket>);
BENCHMARK(BM_try_acquire<rate_limit_algorithm::fixed_window>);
BENCHMARK(BM_try_acquire<rate_limit_algorithm::sliding_window>);
BENCHMARK(BM_try_acquire<rate_limit_algorithm::token_bucket>)->Threads(2)->UseRealTime();
BENCHMARK(BM_try_acquire<rate_limit_algorithm::leaky_bucket>)->Threads(2)->UseRealTime();
BENCHMARK(BM_try_acquire<rate_limit_algorithm::fixed_window>)->Threads(2)->UseRealTime();
BENCHMARK(BM_try_acquire<rate_limit_algorithm::sliding_window>)->Threads(2)->UseRealTime();

void BM_try_acquire_coarse_clock(benchmark::State& state) {
  static limiter l{fast(rate_limit_algorithm::token_bucket), coarse_clock()};
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(l.try_acquire());
  a.report(state);
}
BENCHMARK(BM_try_acquire_coarse_clock);

// With the `allowed` total (a watched limiter): one more atomic add per grant.
void BM_try_acquire_token_bucket_counted(benchmark::State& state) {
  auto config = fast(rate_limit_algorithm::token_bucket);
  config.count_grants = true;
  static limiter l{config};
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(l.try_acquire());
  a.report(state);
}
BENCHMARK(BM_try_acquire_token_bucket_counted);

rate_limiter& big_registry() {
  static rate_limiter* reg = [] {
    auto* r = new rate_limiter{};
    for (int i = 0; i < 100; ++i)
      r->configure("service-" + std::to_string(i), fast(rate_limit_algorithm::token_bucket));
    r->configure("factor_api", fast(rate_limit_algorithm::token_bucket));
    return r;
  }();
  return *reg;
}

void BM_registry_lookup(benchmark::State& state) {
  auto& reg = big_registry();
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(reg.configured("factor_api"));
  a.report(state);
}
BENCHMARK(BM_registry_lookup);

void BM_registry_try_acquire(benchmark::State& state) {
  auto& reg = big_registry();
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(reg.try_acquire("factor_api"));
  a.report(state);
}
BENCHMARK(BM_registry_try_acquire);
BENCHMARK(BM_registry_try_acquire)->Threads(2)->UseRealTime();

void BM_registry_tenant_try_acquire(benchmark::State& state) {
  auto& reg = big_registry();
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
BENCHMARK(BM_registry_tenant_try_acquire);
BENCHMARK(BM_registry_tenant_try_acquire)->Threads(2)->UseRealTime();

// A rate-only reconfiguration (what adaptive_rate does on each step) of a key
// with 100 tenants: the key's limiter and each tenant's, changed in place.
void BM_registry_reconfigure_rate(benchmark::State& state) {
  rate_limiter reg;
  reg.configure("llm", {.requests_per_second = 10, .burst_size = 20});
  for (int i = 0; i < 100; ++i) (void)reg.try_acquire("llm", "tenant-" + std::to_string(i));
  double rate = 10;
  bench::alloc_scope a;
  for (auto _ : state) {
    rate = rate == 10 ? 5 : 10;
    reg.configure("llm", {.requests_per_second = rate, .burst_size = 20});
  }
  a.report(state);
}
BENCHMARK(BM_registry_reconfigure_rate);

// A refusal through the policy and try_call: the rejection travels as a value
// (no allocation, no throw).
void BM_policy_refusal_try_call(benchmark::State& state) {
  static rate_limiter reg;
  reg.configure("refused", {.requests_per_second = 1e-6, .burst_size = 1});
  resilient fetch{[](int x) { return x * 0.233; }, rate_limit{reg, "refused"}};
  (void)fetch.try_call(0);  // the one permit
  int i = 0;
  bench::alloc_scope a;
  for (auto _ : state) {
    auto r = fetch.try_call(++i);
    if (r) state.SkipWithError("not refused");
    benchmark::DoNotOptimize(r);
  }
  a.report(state);
}
BENCHMARK(BM_policy_refusal_try_call);

}  // namespace

BENCHMARK_MAIN();
