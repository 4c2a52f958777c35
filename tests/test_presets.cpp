#include <resilience/degradation.hpp>
#include <resilience/presets.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <vector>

using namespace resilience;
using namespace std::chrono_literals;

// Every callable below takes a std::stop_token, so the preset's timeout runs
// it inline (cooperatively) on the test's thread and virtual time stays
// deterministic; a callable without one would be run on an executor thread
// (a detached timeout), racing the auto-advancing clock.

namespace {

struct row {
  operation_type op;
  std::string_view name;
  int retries;
  duration timeout;
  presets::fallback_kind fallback;
  double rate;
};

// DESIGN.md, "Defaults from the seed": the production column.
constexpr row production_table[] = {
    {operation_type::factor_lookup, "factor_api", 3, 5s, presets::fallback_kind::cached, 10},
    {operation_type::llm_inference, "llm_api", 2, 30s, presets::fallback_kind::cached, 5},
    {operation_type::erp_api_call, "erp_api", 5, 10s, presets::fallback_kind::cached, 5},
    {operation_type::database_query, "database", 3, 10s, presets::fallback_kind::none, 0},
    {operation_type::report_generation, "report_generator", 2, 60s, presets::fallback_kind::default_value, 0},
    {operation_type::external_api, "external_api", 3, 10s, presets::fallback_kind::none, 0},
};

}  // namespace

TEST_CASE("production presets are the seed's numbers", "[presets]") {
  for (const auto& r : production_table) {
    INFO(to_string(r.op));
    constexpr auto env = environment::production;
    const presets::settings s = presets::get(r.op, env);
    CHECK(s.operation == r.op);
    CHECK(s.env == env);
    CHECK(s.name == r.name);
    CHECK(s.max_retries == r.retries);
    CHECK(s.base_delay == 1s);
    CHECK(s.jitter == jitter_mode::full);
    CHECK(s.timeout == r.timeout);
    CHECK(s.fallback == r.fallback);
    CHECK(s.requests_per_second == r.rate);
    CHECK(s.burst_size == static_cast<std::int64_t>(2 * r.rate));
    CHECK(s.rate_limited() == (r.rate > 0));
    CHECK(s.fail_max == 5);
    CHECK(s.break_duration == 60s);
  }
}

TEST_CASE("development presets relax production: 2 retries from 0.5 s, timeouts x2, 100 req/s, fail_max 10",
          "[presets]") {
  for (const auto& r : production_table) {
    INFO(to_string(r.op));
    const presets::settings s = presets::get(r.op, environment::development);
    CHECK(s.env == environment::development);
    CHECK(s.name == r.name);
    CHECK(s.max_retries == 2);
    CHECK(s.base_delay == 500ms);
    CHECK(s.jitter == jitter_mode::none);
    CHECK(s.timeout == 2 * r.timeout);
    CHECK(s.fallback == r.fallback);
    CHECK(s.requests_per_second == (r.rate > 0 ? 100 : 0));
    CHECK(s.burst_size == (r.rate > 0 ? 200 : 0));
    CHECK(s.fail_max == 10);
    CHECK(s.break_duration == 60s);
  }
}

TEST_CASE("presets are usable at compile time and cover every operation type", "[presets]") {
  STATIC_REQUIRE(presets::get(operation_type::llm_inference, environment::production).timeout == 30s);
  STATIC_REQUIRE(presets::get(operation_type::report_generation, environment::development).timeout == 120s);
  STATIC_REQUIRE(presets::operation_types.size() == 6);
  STATIC_REQUIRE(presets::dependency_name(operation_type::erp_api_call) == "erp_api");
  CHECK(to_string(environment::development) == "development");
  CHECK(presets::to_string(presets::fallback_kind::default_value) == "default_value");
}

TEST_CASE("the option builders carry the preset into each policy", "[presets]") {
  manual_clock clk;
  const auto s = presets::get(operation_type::erp_api_call, environment::production);
  const retry_options r = presets::retry_settings(s);
  CHECK(r.max_retries == 5);
  CHECK(r.base_delay == 1s);
  CHECK(r.strategy == backoff_strategy::exponential);
  CHECK(r.jitter == jitter_mode::full);
  auto retries = [&r](const rejection_kind& k) {
    const rejection rej{.kind = &k};
    return r.handle.matches(failure{&rej});
  };
  CHECK(retries(timeout_kind));
  CHECK(retries(rate_limited_kind));
  CHECK_FALSE(retries(circuit_open_kind));
  CHECK_FALSE(retries(degraded_kind));
  CHECK(r.handle.handles_every_exception());
  const timeout_options t = presets::timeout_settings(s);
  CHECK(t.limit == 10s);
  CHECK(t.name == "erp_api");
  const circuit_breaker_options b = presets::breaker_settings(s, clk);
  CHECK(b.name == "erp_api");
  CHECK(b.fail_max == 5);
  CHECK(b.break_duration == 60s);
  CHECK(b.clock == clock_ref{clk});
  const limiter_options l = presets::rate_limit_settings(s);
  CHECK(l.requests_per_second == 5);
  CHECK(l.burst_size == 10);
}

TEST_CASE("make: factor lookup retries, opens the shared breaker, and serves the cache", "[presets]") {
  manual_clock clk{manual_clock::auto_advance};
  circuit_breaker_registry breakers;
  rate_limiter limits{clk};
  const presets::sources src{.breakers = &breakers, .limits = &limits, .clock = clk};
  result_cache<std::string, double> factors{{.clock = clk}};

  int attempts = 0;
  bool down = false;
  auto fetch = [&](std::stop_token, const std::string& activity) {
    ++attempts;
    if (down) throw std::runtime_error{"factor API: HTTP 503"};
    return activity == "electricity" ? 0.233 : 1.0;
  };
  auto lookup = presets::make(operation_type::factor_lookup, environment::production, fetch, factors, src);

  CHECK(lookup(std::string{"electricity"}) == 0.233);
  CHECK(attempts == 1);

  down = true;
  attempts = 0;
  CHECK(lookup(std::string{"electricity"}) == 0.233);  // 1 try + 3 retries, then the cache
  CHECK(attempts == 4);
  auto breaker = breakers.find("factor_api");
  REQUIRE(breaker.has_value());
  CHECK(breaker->options().fail_max == 5);
  CHECK(breaker->state() == circuit_state::closed);

  attempts = 0;
  CHECK(lookup(std::string{"electricity"}) == 0.233);  // the 5th failure opens it; no retry into an open breaker
  CHECK(attempts == 1);
  CHECK(breaker->state() == circuit_state::open);
  CHECK_THROWS_AS(lookup(std::string{"diesel"}), circuit_open_error);  // nothing cached for diesel
  CHECK(attempts == 1);

  // A second pipeline for the same dependency shares the breaker and the limit.
  auto other = presets::make(operation_type::factor_lookup, environment::production, fetch, factors, src);
  CHECK(std::get<2>(other.policies().policies()) == *breaker);
  CHECK(limits.configured("factor_api"));
  CHECK(limits.stats("factor_api").config.requests_per_second == 10);
  CHECK(limits.stats("factor_api").config.burst_size == 20);
}

TEST_CASE("make keeps a rate limit configured before it", "[presets]") {
  manual_clock clk{manual_clock::auto_advance};
  circuit_breaker_registry breakers;
  rate_limiter limits{clk};
  limits.enable_grant_counting();  // the checks read stats().allowed (grants are not counted by default)
  limits.configure("llm_api", {.requests_per_second = 1, .burst_size = 1});
  result_cache<std::string, std::string> answers{{.clock = clk}};
  auto ask = presets::make(operation_type::llm_inference, environment::production,
                           [](std::stop_token, const std::string& q) { return "answer: " + q; }, answers,
                           {.breakers = &breakers, .limits = &limits, .clock = clk});
  CHECK(ask(std::string{"q"}) == "answer: q");
  CHECK(limits.stats("llm_api").config.requests_per_second == 1);
  CHECK(limits.stats("llm_api").allowed == 1);
}

TEST_CASE("make: development doubles the timeout", "[presets]") {
  manual_clock clk{manual_clock::auto_advance};
  circuit_breaker_registry breakers;
  rate_limiter limits{clk};
  const presets::sources src{.breakers = &breakers, .limits = &limits, .clock = clk};
  int attempts = 0;
  // A query that takes 15 s of virtual time and stops when asked.
  auto slow_query = [&](std::stop_token stop) {
    ++attempts;
    clk.sleep_until(clk.now() + 15s, stop);
    if (stop.stop_requested()) throw std::runtime_error{"query cancelled"};
    return 42;
  };
  auto dev = presets::make(operation_type::database_query, environment::development, slow_query, src);
  CHECK(dev() == 42);  // 20 s limit
  CHECK(attempts == 1);

  attempts = 0;
  circuit_breaker_registry prod_breakers;
  auto prod = presets::make(operation_type::database_query, environment::production, slow_query,
                            {.breakers = &prod_breakers, .limits = &limits, .clock = clk});
  CHECK_THROWS_AS(prod(), timeout_error);  // 10 s limit, on every one of 1 + 3 attempts
  CHECK(attempts == 4);
}

TEST_CASE("make: report generation falls back to the default value", "[presets]") {
  manual_clock clk{manual_clock::auto_advance};
  circuit_breaker_registry breakers;
  rate_limiter limits{clk};
  int attempts = 0;
  auto render = [&](std::stop_token, int year) -> std::string {
    ++attempts;
    throw std::runtime_error{"renderer crashed on " + std::to_string(year)};
  };
  auto report = presets::make(operation_type::report_generation, environment::production, render,
                              std::string{"report queued; try again later"},
                              {.breakers = &breakers, .limits = &limits, .clock = clk});
  CHECK(report(2025) == "report queued; try again later");
  CHECK(attempts == 3);  // 1 + 2 retries
}

TEST_CASE("make rejects a fallback of the wrong kind, naming the kind", "[presets]") {
  circuit_breaker_registry breakers;
  rate_limiter limits;
  const presets::sources src{.breakers = &breakers, .limits = &limits};
  auto fetch = [](std::stop_token, const std::string&) { return 1.0; };
  result_cache<std::string, double> cache;
  CHECK_THROWS_WITH(presets::make(operation_type::factor_lookup, environment::production, fetch, src),
                    Catch::Contains("factor_lookup") && Catch::Contains("cached"));
  CHECK_THROWS_WITH(presets::make(operation_type::factor_lookup, environment::production, fetch, 0.0, src),
                    Catch::Contains("result_cache"));
  CHECK_THROWS_WITH(presets::make(operation_type::report_generation, environment::production, fetch, cache, src),
                    Catch::Contains("default value"));
  // An operation without a preset fallback accepts one anyway.
  CHECK_NOTHROW(presets::make(operation_type::database_query, environment::production, fetch, cache, src));
  CHECK_NOTHROW(presets::make(operation_type::external_api, environment::development, fetch, src));
}

TEST_CASE("make: development retries twice after exactly 0.5 s and 1 s", "[presets]") {
  manual_clock clk{manual_clock::auto_advance};
  circuit_breaker_registry breakers;
  rate_limiter limits{clk};
  std::vector<duration> at;
  const auto t0 = clk.now();
  auto query = [&](std::stop_token) -> int {
    at.push_back(clk.now() - t0);
    throw std::runtime_error{"connection reset"};
  };
  auto db = presets::make(operation_type::database_query, environment::development, query,
                          {.breakers = &breakers, .limits = &limits, .clock = clk});
  CHECK_THROWS_AS(db(), std::runtime_error);
  const std::vector<duration> want{0s, 500ms, 1500ms};
  CHECK(at == want);
}

TEST_CASE("make: the preset rate limit is enforced, and a rate-limited attempt is retried", "[presets]") {
  manual_clock clk{manual_clock::auto_advance};
  circuit_breaker_registry breakers;
  rate_limiter limits{clk};
  limits.enable_grant_counting();  // the checks read stats().allowed (grants are not counted by default)
  result_cache<int, int> cache{{.clock = clk}};
  int calls = 0;
  auto ask = presets::make(operation_type::llm_inference, environment::production,
                           [&](std::stop_token, int x) {
                             ++calls;
                             return x;
                           },
                           cache, {.breakers = &breakers, .limits = &limits, .clock = clk});
  const auto t0 = clk.now();
  for (int i = 0; i < 10; ++i) CHECK(ask(i) == i);  // the burst of 10
  CHECK(clk.now() == t0);
  CHECK(ask(10) == 10);  // refused once, then retried after at least the 200 ms the limiter asked for
  CHECK(clk.now() - t0 >= 200ms);
  CHECK(calls == 11);
  CHECK(limits.stats("llm_api").rejected == 1);
  CHECK(limits.stats("llm_api").allowed == 11);
}
