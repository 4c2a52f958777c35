#include <resilience/config.hpp>
#include <resilience/metrics.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

using namespace resilience;
using namespace std::chrono_literals;

#include "support/sanitizers.hpp"

namespace {

// The issues of a rejected document, as "path: message" lines.
std::vector<std::string> problems(std::string_view text, const config_defaults& defaults = {}) {
  try {
    (void)config::parse(text, defaults);
  } catch (const config_error& e) {
    std::vector<std::string> out;
    for (const auto& i : e.issues()) out.push_back(i.path + ": " + i.message);
    return out;
  }
  return {};
}

std::string one_problem(std::string_view text) {
  const auto p = problems(text);
  REQUIRE(p.size() == 1);
  return p.front();
}

// A file in the temporary directory, removed at the end of the test.
struct temp_file {
  explicit temp_file(std::string_view name)
      : path{std::filesystem::temp_directory_path() /
             (std::string{name} + "-" + std::to_string(::getpid()) + ".json")} {}
  ~temp_file() { std::filesystem::remove(path); }
  void write(std::string_view text) const {
    const auto tmp = path.string() + ".tmp";
    std::ofstream{tmp} << text;
    std::filesystem::rename(tmp, path);  // readers see the old file or the new one
  }
  std::filesystem::path path;
};

}  // namespace

TEST_CASE("every policy's keys are read", "[config]") {
  const auto cfg = config::parse(R"({
    "breakers": {"factor_api": {"window": "count_based", "fail_max": 7, "break_duration": "30s", "window_size": 50,
                                "window_duration": 120, "window_buckets": 12, "minimum_calls": 10,
                                "failure_rate_threshold": 0.25, "slow_call_duration": "2s", "slow_call_rate_threshold": 0.75,
                                "half_open_max_calls": 3, "success_threshold": 2, "max_wait_in_half_open": "1m",
                                "break_duration_multiplier": 2, "max_break_duration": "10m"}},
    "limiters": {"erp_api": {"requests_per_second": 5, "burst_size": 10, "algorithm": "leaky_bucket",
                             "max_partitions": 100, "count_grants": true}},
    "retries": {"erp_api": {"max_retries": 5, "base_delay": "250ms", "strategy": "fibonacci", "multiplier": 3,
                            "max_delay": "30s", "jitter": "equal"}},
    "timeouts": {"llm": {"limit": 30.5, "mode": "cooperative"}},
    "bulkheads": {"reports": {"max_concurrent_calls": 4, "max_wait": "100ms"}},
    "degradation": {"register_defaults": false, "recover_after_reports": 5, "recover_after_time": "20s",
                    "unknown_service_tier": "core",
                    "services": {"geo_api": {"tier": "read_only", "slow_threshold": "3s"}}},
    "presets": {"development": {"llm_inference": {"max_retries": 1, "base_delay": "100ms", "jitter": "full",
                                                  "timeout": "90s", "requests_per_second": 20, "burst_size": 40,
                                                  "fail_max": 3, "break_duration": "5s"}}}
  })");
  const auto b = cfg.breaker("factor_api");
  CHECK(b.name == "factor_api");
  CHECK(b.window == breaker_window::count_based);
  CHECK(b.fail_max == 7);
  CHECK(b.break_duration == 30s);
  CHECK(b.window_size == 50);
  CHECK(b.window_duration == 120s);
  CHECK(b.window_buckets == 12);
  CHECK(b.minimum_calls == 10);
  CHECK(b.failure_rate_threshold == 0.25);
  CHECK(b.slow_call_duration == 2s);
  CHECK(b.slow_call_rate_threshold == 0.75);
  CHECK(b.half_open_max_calls == 3);
  CHECK(b.success_threshold == 2);
  CHECK(b.max_wait_in_half_open == 1min);
  CHECK(b.break_duration_multiplier == 2.0);
  CHECK(b.max_break_duration == 10min);

  const auto l = cfg.limiter("erp_api");
  CHECK(l.requests_per_second == 5.0);
  CHECK(l.burst_size == 10);
  CHECK(l.algorithm == rate_limit_algorithm::leaky_bucket);
  CHECK(l.max_partitions == 100);
  CHECK(l.count_grants);

  const auto r = cfg.retry("erp_api");
  CHECK(r.max_retries == 5);
  CHECK(r.base_delay == 250ms);
  CHECK(r.strategy == backoff_strategy::fibonacci);
  CHECK(r.multiplier == 3.0);
  CHECK(r.max_delay == 30s);
  CHECK(r.jitter == jitter_mode::equal);

  const auto t = cfg.timeout("llm");
  CHECK(t.limit == 30500ms);
  CHECK(t.mode == timeout_mode::cooperative);
  CHECK(t.name == "llm");

  const auto bh = cfg.bulkhead("reports");
  CHECK(bh.max_concurrent_calls == 4);
  CHECK(bh.max_wait == 100ms);
  CHECK(bh.name == "reports");

  CHECK_FALSE(cfg.degradation().register_defaults);
  CHECK(cfg.degradation().recover_after_reports == 5);
  CHECK(cfg.degradation().recover_after_time == 20s);
  CHECK(cfg.degradation().unknown_service_tier == tier::core);
  REQUIRE(cfg.services().size() == 1);
  CHECK(cfg.services().at("geo_api").implies == tier::read_only);
  CHECK(cfg.services().at("geo_api").slow_threshold == 3s);

  const auto p = cfg.preset(operation_type::llm_inference, environment::development);
  CHECK(p.max_retries == 1);
  CHECK(p.base_delay == 100ms);
  CHECK(p.jitter == jitter_mode::full);
  CHECK(p.timeout == 90s);
  CHECK(p.requests_per_second == 20.0);
  CHECK(p.burst_size == 40);
  CHECK(p.fail_max == 3);
  CHECK(p.break_duration == 5s);
  CHECK(p.name == "llm_api");
  // The other environment and operations keep the seed's numbers.
  CHECK(cfg.preset(operation_type::llm_inference, environment::production).max_retries == 2);
  CHECK(cfg.preset(operation_type::factor_lookup, environment::development).timeout == 10s);

  // Policies build from what was read.
  CHECK(circuit_breaker{cfg.breaker("factor_api")}.options().fail_max == 7);
  CHECK(retry{cfg.retry("erp_api")}.options().max_retries == 5);
}

TEST_CASE("durations: seconds, or a number with a unit", "[config]") {
  const auto cfg =
      config::parse(R"({"timeouts": {"a": {"limit": "1500us"}, "b": {"limit": "2h"}, "c": {"limit": "250ns"},
                                                  "d": {"limit": 0.25}, "e": {"limit": "1.5min"}}})");
  CHECK(cfg.timeout("a").limit == 1500us);
  CHECK(cfg.timeout("b").limit == 2h);
  CHECK(cfg.timeout("c").limit == 250ns);
  CHECK(cfg.timeout("d").limit == 250ms);
  CHECK(cfg.timeout("e").limit == 90s);
  CHECK(one_problem(R"({"timeouts": {"a": {"limit": "5 parsecs"}}})") ==
        R"(timeouts.a.limit: must be a duration (seconds, or a string such as "500ms", "2s", "1m"), got "5 parsecs")");
  CHECK(one_problem(R"({"timeouts": {"a": {"limit": "200y"}}})").starts_with("timeouts.a.limit: must be a duration"));
  CHECK(one_problem(R"({"timeouts": {"a": {"limit": 1e12}}})") ==
        "timeouts.a.limit: must be within 100 years (resilience::max_duration), got 1000000000000.0");
}

TEST_CASE("the file is merged over the code defaults, per section and per name", "[config]") {
  manual_clock clk;
  config_defaults d;
  d.breaker.clock = clk;
  d.breaker.fail_max = 9;
  d.breakers["llm_api"] = {.fail_max = 2, .break_duration = 5s};
  d.limiter.burst_size = 50;
  d.retry.max_retries = 1;
  d.retries["code_only"] = {.max_retries = 7};
  d.timeout.limit = 3s;
  d.bulkhead.max_concurrent_calls = 8;

  const auto cfg = config::parse(R"({
    "breakers": {"factor_api": {"break_duration": "10s"}, "llm_api": {"fail_max": 4}},
    "limiters": {"erp_api": {"requests_per_second": 2}},
    "retries": {"erp_api": {"base_delay": "2s"}},
    "timeouts": {"db": {}},
    "bulkheads": {"reports": {"max_wait": "1s"}}
  })",
                                 d);

  // Section base + the file's fields.
  CHECK(cfg.breaker("factor_api").fail_max == 9);
  CHECK(cfg.breaker("factor_api").break_duration == 10s);
  CHECK(cfg.breaker("factor_api").clock == clk);
  // Per-name code default + the file's fields.
  CHECK(cfg.breaker("llm_api").fail_max == 4);
  CHECK(cfg.breaker("llm_api").break_duration == 5s);
  CHECK(cfg.breaker("llm_api").name == "llm_api");
  CHECK(cfg.limiter("erp_api").requests_per_second == 2.0);
  CHECK(cfg.limiter("erp_api").burst_size == 50);
  CHECK(cfg.retry("erp_api").max_retries == 1);
  CHECK(cfg.retry("erp_api").base_delay == 2s);
  CHECK(cfg.timeout("db").limit == 3s);
  CHECK(cfg.bulkhead("reports").max_concurrent_calls == 8);
  CHECK(cfg.bulkhead("reports").max_wait == 1s);
  // Instances named only in code exist; unknown names get the section's defaults.
  CHECK(cfg.retries().contains("code_only"));
  CHECK(cfg.retry("code_only").max_retries == 7);
  CHECK(cfg.retry("nobody").max_retries == 1);
  CHECK(cfg.breaker("nobody").name == "nobody");
  CHECK(cfg.breakers().size() == 2);
  // No file at all: the code defaults.
  CHECK(config{d}.breaker("llm_api").fail_max == 2);
}

TEST_CASE("each policy's own rules, reported at the JSON path with the file's value", "[config]") {
  CHECK(one_problem(R"({"limiters": {"erp_api": {"requests_per_second": -1}}})") ==
        "limiters.erp_api.requests_per_second: must be a finite number > 0, got -1");
  CHECK(one_problem(R"({"limiters": {"erp_api": {"burst_size": 0}}})") ==
        "limiters.erp_api.burst_size: must be between 1 and 4294967295, got 0");
  CHECK(one_problem(R"({"limiters": {"k": {"max_partitions": 0}}})") ==
        "limiters.k.max_partitions: must be >= 1, got 0");
  CHECK(one_problem(R"({"breakers": {"db": {"fail_max": 0}}})") == "breakers.db.fail_max: must be >= 1, got 0");
  CHECK(one_problem(R"({"breakers": {"db": {"break_duration": "-1s"}}})") ==
        R"(breakers.db.break_duration: must be > 0, got "-1s")");
  CHECK(one_problem(R"({"breakers": {"db": {"window": "count_based", "failure_rate_threshold": 1.5}}})") ==
        "breakers.db.failure_rate_threshold: must be in (0, 1], got 1.5");
  CHECK(one_problem(R"({"breakers": {"db": {"window": "count_based", "window_size": 10, "minimum_calls": 11}}})") ==
        "breakers.db.minimum_calls: must be <= window_size, got 11");
  // A rule on a field the file did not set names it, without a value.
  CHECK(one_problem(R"({"breakers": {"db": {"window": "count_based", "window_size": 10}}})") ==
        "breakers.db.minimum_calls: must be <= window_size");
  CHECK(one_problem(R"({"retries": {"r": {"max_retries": -1}}})") == "retries.r.max_retries: must be >= 0, got -1");
  CHECK(one_problem(R"({"retries": {"r": {"base_delay": "10s", "max_delay": "1s"}}})") ==
        R"(retries.r.max_delay: must be >= base_delay, got "1s")");
  CHECK(one_problem(R"({"retries": {"r": {"multiplier": 0.5}}})") ==
        "retries.r.multiplier: must be finite and >= 1, got 0.5");
  CHECK(one_problem(R"({"timeouts": {"t": {"limit": 0}}})") == "timeouts.t.limit: must be > 0, got 0");
  CHECK(one_problem(R"({"bulkheads": {"b": {"max_concurrent_calls": 0}}})") ==
        "bulkheads.b.max_concurrent_calls: must be >= 1, got 0");
  CHECK(one_problem(R"({"bulkheads": {"b": {"max_wait": "-5ms"}}})") ==
        R"(bulkheads.b.max_wait: must be >= 0, got "-5ms")");
  CHECK(one_problem(R"({"degradation": {"recover_after_reports": 0}})") ==
        "degradation.recover_after_reports: must be >= 1, got 0");
  CHECK(one_problem(R"({"degradation": {"services": {"geo": {"tier": "core", "slow_threshold": 0}}}})") ==
        "degradation.services.geo.slow_threshold: must be > 0, got 0");
  CHECK(one_problem(R"({"degradation": {"services": {"geo": {"slow_threshold": "1s"}}}})") ==
        "degradation.services.geo.tier: is required (one of full, core, read_only, maintenance)");
  CHECK(one_problem(R"({"presets": {"production": {"erp_api_call": {"timeout": "0s"}}}})") ==
        R"(presets.production.erp_api_call.timeout: must be > 0, got "0s")");
  CHECK(one_problem(R"({"presets": {"production": {"erp_api_call": {"requests_per_second": -3}}}})") ==
        "presets.production.erp_api_call.requests_per_second: must be >= 0 (0: not rate limited), got -3");
  CHECK(one_problem(R"({"presets": {"production": {"erp_api_call": {"fail_max": 0}}}})") ==
        "presets.production.erp_api_call.fail_max: must be >= 1, got 0");
}

TEST_CASE("unknown keys and wrong types are errors that say which", "[config]") {
  CHECK(
      one_problem(R"({"limiter": {}})") ==
      "limiter: unknown key (expected one of breakers, limiters, retries, timeouts, bulkheads, degradation, presets)");
  CHECK(one_problem(R"({"limiters": {"erp_api": {"burst": 3}}})") ==
        "limiters.erp_api.burst: unknown key (expected one of requests_per_second, burst_size, algorithm, "
        "max_partitions, count_grants)");
  CHECK(one_problem(R"({"retries": {"r": {"retry_on": ["timeout"]}}})") ==
        "retries.r.retry_on: unknown key (expected one of max_retries, base_delay, strategy, multiplier, max_delay, "
        "jitter)");
  CHECK(one_problem(R"({"presets": {"staging": {}}})") ==
        "presets.staging: unknown key (expected one of development, production)");
  CHECK(one_problem(R"({"presets": {"production": {"geo_lookup": {}}}})") ==
        "presets.production.geo_lookup: unknown key (expected one of factor_lookup, llm_inference, erp_api_call, "
        "database_query, "
        "report_generation, external_api)");
  CHECK(one_problem(R"({"limiters": {"erp_api": {"requests_per_second": "ten"}}})") ==
        R"(limiters.erp_api.requests_per_second: must be a number, got "ten")");
  CHECK(one_problem(R"({"breakers": {"db": {"fail_max": 2.5}}})") ==
        "breakers.db.fail_max: must be an integer between -2147483648 and 2147483647, got 2.5");
  CHECK(one_problem(R"({"breakers": {"db": {"window_size": -1}}})") ==
        "breakers.db.window_size: must be an integer between 0 and 18446744073709551615, got -1");
  CHECK(one_problem(R"({"limiters": {"k": {"count_grants": 1}}})") ==
        "limiters.k.count_grants: must be true or false, got 1");
  CHECK(one_problem(R"({"limiters": {"k": {"algorithm": "gcra"}}})") ==
        R"(limiters.k.algorithm: must be one of token_bucket, leaky_bucket, fixed_window, sliding_window, got "gcra")");
  CHECK(one_problem(R"({"breakers": []})") == "breakers: must be an object, got []");
  CHECK(one_problem(R"({"breakers": {"db": 5}})") == "breakers.db: must be an object, got 5");
  CHECK(one_problem("[1, 2]") == ": must be an object, got [1,2]");
  CHECK(one_problem(R"({"breakers": )").starts_with(": not valid JSON: "));
}

TEST_CASE("every problem is reported at once", "[config]") {
  const auto p = problems(R"({
    "limiters": {"erp_api": {"requests_per_second": -1, "burst_size": 0}, "factor_api": {"rps": 3}},
    "breakers": {"db": {"fail_max": 0, "break_duration": 0, "half_open_max_calls": "two"}},
    "retries": {"r": {"max_retries": -2, "multiplier": 0}},
    "timeouts": {"t": {"limit": -1}},
    "bulkheads": {"b": {"max_concurrent_calls": 0}},
    "colour": "blue"
  })");
  const std::vector<std::string> expected{
      "breakers.db.half_open_max_calls: must be an integer between -2147483648 and 2147483647, got \"two\"",
      "bulkheads.b.max_concurrent_calls: must be >= 1, got 0",
      "colour: unknown key (expected one of breakers, limiters, retries, timeouts, bulkheads, degradation, presets)",
      "limiters.erp_api.requests_per_second: must be a finite number > 0, got -1",
      "limiters.erp_api.burst_size: must be between 1 and 4294967295, got 0",
      "limiters.factor_api.rps: unknown key (expected one of requests_per_second, burst_size, algorithm, "
      "max_partitions, count_grants)",
      "retries.r.max_retries: must be >= 0, got -2",
      "retries.r.multiplier: must be finite and >= 1, got 0",
      "timeouts.t.limit: must be > 0, got -1",
  };
  CHECK(p == expected);
  // A type error in an instance stops its policy checks (its values are not
  // all known); the rules of the other fields run once the type is fixed.
  const auto fixed =
      problems(R"({"breakers": {"db": {"fail_max": 0, "break_duration": 0, "half_open_max_calls": 2}}})");
  CHECK(fixed == std::vector<std::string>{"breakers.db.fail_max: must be >= 1, got 0",
                                          "breakers.db.break_duration: must be > 0, got 0"});
  try {
    (void)config::parse(R"({"timeouts": {"t": {"limit": -1}}, "bulkheads": {"b": {"max_wait": -1}}})");
    FAIL("no config_error");
  } catch (const config_error& e) {
    CHECK(std::string{e.what()} ==
          "invalid configuration (2 problems)\n  bulkheads.b.max_wait: must be >= 0, got -1\n  timeouts.t.limit: must "
          "be > 0, got -1");
  }
}

TEST_CASE("apply changes limiters and breakers in place, keeping permits, counts and state", "[config]") {
  manual_clock clk;
  rate_limiter limits{clk};
  circuit_breaker_registry breakers;
  degradation_manager health;
  const config_targets targets{&limits, &breakers, &health};
  config_defaults d;
  d.breaker.clock = clk;

  config::parse(R"({"limiters": {"erp_api": {"requests_per_second": 5, "burst_size": 10}},
                    "breakers": {"erp_api": {"fail_max": 5}}})",
                d)
      .apply(targets);
  auto breaker = *breakers.find("erp_api");
  for (int i = 0; i < 4; ++i) REQUIRE(limits.try_acquire("erp_api"));
  for (int i = 0; i < 3; ++i) (void)breaker.try_call([]() -> int { throw std::runtime_error{"down"}; });
  CHECK(breaker.stats().consecutive_failures == 3);

  config::parse(R"({"limiters": {"erp_api": {"requests_per_second": 10, "burst_size": 10}},
                    "breakers": {"erp_api": {"fail_max": 4, "break_duration": "5s"}},
                    "degradation": {"services": {"erp_api": {"tier": "maintenance", "slow_threshold": "2s"}}}})",
                d)
      .apply(targets);
  // The same objects, changed in place.
  CHECK(*breakers.find("erp_api") == breaker);
  CHECK(breaker.options().fail_max == 4);
  CHECK(breaker.stats().consecutive_failures == 3);
  CHECK(breaker.stats().failed == 3);
  // The bucket kept its fill: 6 of 10 permits left, not a fresh 10.
  CHECK(limits.stats("erp_api").available == 6);
  CHECK(limits.stats("erp_api").allowed + limits.stats("erp_api").rejected == 0);  // grants uncounted, as before
  (void)breaker.try_call([]() -> int { throw std::runtime_error{"down"}; });
  CHECK(breaker.state() == circuit_state::open);  // the 4th failure, under the new fail_max
  CHECK(health.health("erp_api")->implies == tier::maintenance);
  CHECK(health.health("erp_api")->slow_threshold == 2s);
}

TEST_CASE("nothing is applied when anything is invalid", "[config]") {
  manual_clock clk;
  rate_limiter limits{clk};
  circuit_breaker_registry breakers;
  const config_targets targets{&limits, &breakers, nullptr};
  config_defaults d;
  d.breaker.clock = clk;
  config::parse(R"({"limiters": {"erp_api": {"requests_per_second": 5}}, "breakers": {"db": {"fail_max": 5}}})", d)
      .apply(targets);

  // A bad value anywhere: the whole document is rejected before anything is touched.
  CHECK_THROWS_AS(
      config::parse(R"({"limiters": {"erp_api": {"requests_per_second": 50}}, "breakers": {"db": {"fail_max": -1}}})",
                    d),
      config_error);
  CHECK(limits.stats("erp_api").config.requests_per_second == 5.0);

  // A valid document that the live objects cannot take (a breaker's window
  // cannot change under it) is checked against them first.
  const auto cfg = config::parse(R"({"limiters": {"erp_api": {"requests_per_second": 50}, "new_key": {}},
                                     "breakers": {"db": {"window": "count_based"}, "new_breaker": {}}})",
                                 d);
  try {
    cfg.apply(targets);
    FAIL("no config_error");
  } catch (const config_error& e) {
    REQUIRE(e.issues().size() == 1);
    CHECK(e.issues()[0].path == "breakers.db.window");
    CHECK(e.issues()[0].message == "cannot change at run time (build a new breaker)");
  }
  CHECK(limits.stats("erp_api").config.requests_per_second == 5.0);
  CHECK_FALSE(limits.configured("new_key"));
  CHECK_FALSE(breakers.find("new_breaker"));
  CHECK(breakers.find("db")->options().window == breaker_window::consecutive);
}

TEST_CASE("config_loader reloads a file; a bad file changes nothing", "[config]") {
  manual_clock clk;
  rate_limiter limits{clk};
  circuit_breaker_registry breakers;
  config_defaults d;
  d.breaker.clock = clk;
  temp_file file{"resilience-test-config"};
  config_loader loader{file.path, d, {&limits, &breakers, nullptr}};
  CHECK(loader.current()->limiters().empty());
  CHECK_THROWS_AS(loader.reload(), config_error);  // no file yet
  CHECK(loader.failures() == 1);

  file.write(
      R"({"limiters": {"factor_api": {"requests_per_second": 10, "burst_size": 20}}, "retries": {"erp": {"max_retries": 5}}})");
  CHECK(loader.reload()->limiter("factor_api").requests_per_second == 10.0);
  CHECK(loader.reloads() == 1);
  CHECK(loader.current()->retry("erp").max_retries == 5);

  file.write(R"({"limiters": {"factor_api": {"requests_per_second": 0}}})");
  try {
    (void)loader.reload();
    FAIL("no config_error");
  } catch (const config_error& e) {
    CHECK(std::string{e.what()}.find("limiters.factor_api.requests_per_second: must be a finite number > 0, got 0") !=
          std::string::npos);
  }
  CHECK(loader.failures() == 2);
  CHECK(loader.current()->retry("erp").max_retries == 5);  // the previous configuration stays in force
  CHECK(limits.stats("factor_api").config.requests_per_second == 10.0);
}

TEST_CASE("reload under traffic: calls go on, every one counted once", "[config][concurrency]") {
  rate_limiter limits;
  circuit_breaker_registry breakers;
  const config_targets targets{&limits, &breakers, nullptr};
  config::parse(R"({"limiters": {"api": {"requests_per_second": 1000000, "burst_size": 1000}},
                    "breakers": {"api": {"fail_max": 1000000}}})")
      .apply(targets);
  auto breaker = *breakers.find("api");
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> calls{0}, decisions{0};
  std::vector<std::thread> traffic;
  for (int t = 0; t < 2; ++t)
    traffic.emplace_back([&, t] {
      while (!stop.load(std::memory_order_relaxed)) {
        (void)limits.try_acquire("api", t == 0 ? std::string_view{} : std::string_view{"tenant"});
        decisions.fetch_add(1, std::memory_order_relaxed);
        (void)breaker.try_call([t]() -> int {
          if (t == 1) throw std::runtime_error{"down"};
          return 1;
        });
        calls.fetch_add(1, std::memory_order_relaxed);
      }
    });
#ifdef RESILIENCE_TEST_SANITIZED
  const int reloads = 50;
#else
  const int reloads = 300;
#endif
  for (int i = 0; i < reloads; ++i) {
    const auto text = R"({"limiters": {"api": {"requests_per_second": )" + std::to_string(500000 + i) +
                      R"(, "burst_size": )" + std::to_string(500 + i % 100) +
                      R"(}}, "breakers": {"api": {"fail_max": )" + std::to_string(900000 + i) + "}}}";
    config::parse(text).apply(targets);
  }
  stop = true;
  for (auto& th : traffic) th.join();
  CHECK(breaker.stats().calls() == calls.load());
  CHECK(breaker.options().fail_max == 900000 + reloads - 1);
  CHECK(limits.stats("api").config.requests_per_second == 500000.0 + reloads - 1);
  CHECK(limits.stats("api").rejected <= decisions.load());
}

TEST_CASE("a reload is an event and a metric", "[config][events]") {
  manual_clock clk;
  rate_limiter limits{clk};
  circuit_breaker_registry breakers;
  config_defaults d;
  d.breaker.clock = clk;
  temp_file file{"resilience-test-config-events"};
  config_loader loader{file.path, d, {&limits, &breakers, nullptr}};
  metrics_registry metrics;
  struct seen_event {
    std::string source, result, error;
    std::int64_t problems;
    log_level severity;
  };
  std::vector<seen_event> seen;
  loader.events().subscribe([&](const event& e) {
    REQUIRE(e.is(config_reloaded_event));
    seen.push_back({std::string{e.source()}, std::string{e.get<std::string_view>("result")},
                    std::string{e.get<std::string_view>("error")}, e.get<std::int64_t>("problems"), e.severity()});
  });

  file.write(R"({"limiters": {"erp_api": {"requests_per_second": 5}}})");
  (void)loader.reload();
  file.write(R"({"limiters": {"erp_api": {"requests_per_second": -1, "burst": 2}}})");
  CHECK_THROWS_AS(loader.reload(), config_error);

  REQUIRE(seen.size() == 2);
  CHECK(seen[0].source == file.path.string());
  CHECK(seen[0].result == "applied");
  CHECK(seen[0].problems == 0);
  CHECK(seen[0].severity == log_level::info);
  CHECK(seen[1].result == "rejected");
  CHECK(seen[1].problems == 2);
  CHECK(seen[1].severity == log_level::error);
  CHECK(seen[1].error.find("limiters.erp_api.requests_per_second: must be a finite number > 0, got -1") !=
        std::string::npos);

  const auto text = metrics.render();
  CHECK(text.find("# TYPE greenlang_config_reloads_total counter") != std::string::npos);
  CHECK(text.find("greenlang_config_reloads_total{result=\"applied\"} 1\n") != std::string::npos);
  CHECK(text.find("greenlang_config_reloads_total{result=\"rejected\"} 1\n") != std::string::npos);
}
