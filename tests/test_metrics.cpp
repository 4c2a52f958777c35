#include <resilience/bulkhead.hpp>
#include <resilience/circuit_breaker.hpp>
#include <resilience/degradation.hpp>
#include <resilience/fallback.hpp>
#include <resilience/metrics.hpp>
#include <resilience/presets.hpp>
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>
#include <resilience/timeout.hpp>

#include <catch2/catch.hpp>

#include "support/events.hpp"

#include <chrono>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/utf8.hpp"

using namespace resilience;
using namespace support;
using namespace std::chrono_literals;

namespace {

// The text parsed into series -> value, plus the HELP/TYPE lines seen.
struct exposition {
  std::map<std::string, double> samples;     // "name{labels}" -> value
  std::map<std::string, std::string> types;  // family -> type
  std::map<std::string, int> help_lines;     // family -> count
  std::vector<std::string> sample_order;     // series names in output order

  double at(const std::string& series) const {
    const auto it = samples.find(series);
    if (it == samples.end()) FAIL("no series " << series);
    return it->second;
  }
  bool has(const std::string& series) const { return samples.count(series) != 0; }
};

exposition parse(const std::string& text) {
  exposition e;
  std::istringstream in{text};
  std::string line;
  while (std::getline(in, line)) {
    REQUIRE(!line.empty());
    if (line.rfind("# HELP ", 0) == 0) {
      const auto rest = line.substr(7);
      ++e.help_lines[rest.substr(0, rest.find(' '))];
    } else if (line.rfind("# TYPE ", 0) == 0) {
      const auto rest = line.substr(7);
      const auto sp = rest.find(' ');
      REQUIRE(e.types.count(rest.substr(0, sp)) == 0);  // one TYPE per family
      e.types[rest.substr(0, sp)] = rest.substr(sp + 1);
    } else {
      const auto sp = line.rfind(' ');
      const auto series = line.substr(0, sp);
      REQUIRE(e.samples.count(series) == 0);  // no series twice
      e.samples[series] = std::stod(line.substr(sp + 1));
      e.sample_order.push_back(series);
    }
  }
  return e;
}

metrics_options local_only() { return {.count_global_events = false}; }

// A policy-like object whose hub the registry can count (as a retry or a
// timeout would be).
struct hub_owner {
  std::shared_ptr<event_hub> hub = std::make_shared<event_hub>();
  event_hub& events() const noexcept { return *hub; }
};

}  // namespace

TEST_CASE("every family has HELP and TYPE lines, names prefixed", "[metrics]") {
  const metrics_registry m;
  auto e = parse(m.render());
  const std::map<std::string, std::string> expected{
      {"greenlang_circuit_breaker_state", "gauge"},
      {"greenlang_circuit_breaker_calls_total", "counter"},
      {"greenlang_circuit_breaker_state_transitions_total", "counter"},
      {"greenlang_circuit_breaker_call_duration_seconds", "histogram"},
      {"greenlang_circuit_breaker_failure_rate", "gauge"},
      {"greenlang_bulkhead_rejections_total", "counter"},
      {"greenlang_rate_limiter_tokens", "gauge"},
      {"greenlang_rate_limiter_requests_total", "counter"},
      {"greenlang_rate_limiter_violations_total", "counter"},
      {"greenlang_degradation_tier", "gauge"},
      {"greenlang_service_health", "gauge"},
      {"greenlang_degradation_tier_changes_total", "counter"},
      {"greenlang_retry_attempts_total", "counter"},
      {"greenlang_retry_exhausted_total", "counter"},
      {"greenlang_timeouts_total", "counter"},
      {"greenlang_fallback_activations_total", "counter"},
  };
  for (const auto& [name, type] : expected) {
    INFO(name);
    CHECK(e.types.count(name) == 1);
    if (e.types.count(name)) CHECK(e.types.at(name) == type);
    CHECK(e.help_lines[name] == 1);
  }
}

TEST_CASE("the prefix is configurable and validated", "[metrics]") {
  const metrics_registry scope3{{.prefix = "scope3"}};
  CHECK(parse(scope3.render()).types.count("scope3_degradation_tier") == 1);
  const metrics_registry bare{{.prefix = ""}};
  CHECK(parse(bare.render()).types.count("degradation_tier") == 1);

  CHECK_THROWS_AS(metrics_registry{{.prefix = "green-lang"}}, std::invalid_argument);
  CHECK_THROWS_AS(metrics_registry{{.prefix = "9lives"}}, std::invalid_argument);
  CHECK_THROWS_WITH((metrics_registry{{.duration_buckets = {1, 0.5}}}), Catch::Contains("duration_buckets"));
  CHECK_THROWS_AS(metrics_registry{{.duration_buckets = {}}}, std::invalid_argument);
  CHECK_THROWS_AS(metrics_registry{{.duration_buckets = {-1}}}, std::invalid_argument);
}

TEST_CASE("events become counters with their labels", "[metrics]") {
  hub_owner policy;
  metrics_registry m{local_only()};
  m.count_events_of(policy);
  const event_hub* hub = &policy.events();

  detail::emit(hub, [] { return retry_attempted("factor_lookup", 1, 1s, "503"); });
  detail::emit(hub, [] { return retry_attempted("factor_lookup", 2, 2s, "503"); });
  detail::emit(hub, [] { return retries_exhausted("factor_lookup", 3, "503"); });
  detail::emit(hub, [] { return timeout_occurred("llm_inference", 30s); });
  detail::emit(hub, [] { return fallback_activated("report", "default", "db down"); });
  detail::emit(hub, [] { return rate_limit_violated("factor_api", "acme", 100ms); });
  detail::emit(hub, [] { return bulkhead_rejected("database", 10); });
  detail::emit(hub, [] { return circuit_state_changed("erp_api", circuit_state::closed, circuit_state::open); });
  detail::emit(hub, [] { return circuit_rejected("erp_api", circuit_state::open, 60s); });
  detail::emit(hub, [] { return tier_changed(tier::full, tier::core, "llm_api"); });
  detail::emit(hub, [] { return service_health_changed("llm_api", false, 31s, "slow"); });

  const auto e = parse(m.render());
  CHECK(e.at(R"(greenlang_retry_attempts_total{operation="factor_lookup"})") == 2);
  CHECK(e.at(R"(greenlang_retry_exhausted_total{operation="factor_lookup"})") == 1);
  CHECK(e.at(R"(greenlang_timeouts_total{operation="llm_inference"})") == 1);
  CHECK(e.at(R"(greenlang_fallback_activations_total{operation="report",strategy="default"})") == 1);
  CHECK(e.at(R"(greenlang_rate_limiter_violations_total{key="factor_api"})") == 1);
  CHECK(e.at(R"(greenlang_bulkhead_rejections_total{name="database"})") == 1);
  CHECK(e.at(R"(greenlang_circuit_breaker_state_transitions_total{name="erp_api",from="closed",to="open"})") == 1);
  CHECK(e.at(R"(greenlang_circuit_breaker_calls_total{name="erp_api",status="rejected"})") == 1);
  // Objects known only by their events: the last state seen.
  CHECK(e.at(R"(greenlang_circuit_breaker_state{name="erp_api"})") == 1);
  CHECK(e.at(R"(greenlang_degradation_tier_changes_total{from="full",to="core"})") == 1);
  CHECK(e.at("greenlang_degradation_tier") == 2);
  CHECK(e.at(R"(greenlang_service_health{service="llm_api"})") == 0);
}

TEST_CASE("a real policy is counted through the global hub", "[metrics]") {
  metrics_registry m;  // counts global_events()
  auto lookup = resilient{[]() -> double { throw std::runtime_error{"HTTP 503"}; }, fallback{default_value{0.0}}};
  CHECK(lookup.try_call_with({.operation = "metrics_test_lookup"}).value() == 0.0);
  CHECK(lookup.try_call_with({.operation = "metrics_test_lookup"}).value() == 0.0);

  const auto e = parse(m.render());
  CHECK(e.at(R"(greenlang_fallback_activations_total{operation="metrics_test_lookup",strategy="default"})") == 2);
}

TEST_CASE("an event reaching both hubs is counted once", "[metrics]") {
  hub_owner policy;
  metrics_registry m;         // global
  m.count_events_of(policy);  // already counted globally: no second subscription
  detail::emit(&policy.events(), [] { return timeout_occurred("metrics_test_once", 1s); });
  CHECK(parse(m.render()).at(R"(greenlang_timeouts_total{operation="metrics_test_once"})") == 1);
}

TEST_CASE("label values escape backslash, quote and newline", "[metrics]") {
  hub_owner policy;
  metrics_registry m{local_only()};
  m.count_events_of(policy);
  detail::emit(&policy.events(), [] { return bulkhead_rejected("db \"main\"\\\nshard", 1); });
  const auto text = m.render();
  CHECK(text.find(R"(greenlang_bulkhead_rejections_total{name="db \"main\"\\\nshard"} 1)") != std::string::npos);
}

TEST_CASE("counters never go backwards and series never disappear", "[metrics]") {
  hub_owner policy;
  metrics_registry m{local_only()};
  m.count_events_of(policy);
  exposition previous;
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i <= round; ++i)
      detail::emit(&policy.events(), [&] { return rate_limit_violated(round % 2 ? "erp" : "llm", "", 1s); });
    const auto now = parse(m.render());
    for (const auto& [series, value] : previous.samples) {
      INFO(series);
      REQUIRE(now.has(series));
      CHECK(now.at(series) >= value);
    }
    previous = now;
  }
  CHECK(previous.at(R"(greenlang_rate_limiter_violations_total{key="llm"})") == 1 + 3 + 5);
  CHECK(previous.at(R"(greenlang_rate_limiter_violations_total{key="erp"})") == 2 + 4);
}

TEST_CASE("counting from many threads loses nothing", "[metrics]") {
  hub_owner policy;
  metrics_registry m{local_only()};
  m.count_events_of(policy);
  constexpr int threads = 4, per_thread = 1000;
  {
    std::vector<std::jthread> workers;
    for (int t = 0; t < threads; ++t)
      workers.emplace_back([&, t] {
        const std::string op = "op" + std::to_string(t % 2);
        for (int i = 0; i < per_thread; ++i) detail::emit(&policy.events(), [&] { return timeout_occurred(op, 1s); });
      });
    for (int i = 0; i < 20; ++i) (void)m.render();  // scrapes race with the counting
  }
  const auto e = parse(m.render());
  CHECK(e.at(R"(greenlang_timeouts_total{operation="op0"})") + e.at(R"(greenlang_timeouts_total{operation="op1"})") ==
        threads * per_thread);
}

TEST_CASE("a duration histogram writes cumulative buckets, sum and count", "[metrics]") {
  duration_histogram h{{0.01, 0.1, 1}};
  h.observe(5ms);
  h.observe(10ms);  // on the bound: counts as le="0.01"
  h.observe(50ms);
  h.observe(2s);
  h.observe(-1ms);  // clamped to zero
  metric_snapshot s;
  h.collect(s, "call_duration_seconds", "help", {{"name", "db"}});
  std::string text;
  s.write(text, "greenlang");
  const auto e = parse(text);
  CHECK(e.at(R"(greenlang_call_duration_seconds_bucket{name="db",le="0.01"})") == 3);
  CHECK(e.at(R"(greenlang_call_duration_seconds_bucket{name="db",le="0.1"})") == 4);
  CHECK(e.at(R"(greenlang_call_duration_seconds_bucket{name="db",le="1"})") == 4);
  CHECK(e.at(R"(greenlang_call_duration_seconds_bucket{name="db",le="+Inf"})") == 5);
  CHECK(e.at(R"(greenlang_call_duration_seconds_count{name="db"})") == 5);
  CHECK(e.at(R"(greenlang_call_duration_seconds_sum{name="db"})") == Approx(2.065));
  CHECK(e.types.at("greenlang_call_duration_seconds") == "histogram");
}

TEST_CASE("a watched rate_limiter is read at scrape time", "[metrics]") {
  manual_clock clk;
  rate_limiter limits{clk};
  limits.configure("factor_api", {.requests_per_second = 10, .burst_size = 3});
  limits.configure("llm \"api\"", {.requests_per_second = 5, .burst_size = 1});
  metrics_registry m{local_only()};
  m.watch(limits);

  for (int i = 0; i < 5; ++i) (void)limits.try_acquire("factor_api");  // 3 allowed, 2 rejected: one episode
  auto e = parse(m.render());
  CHECK(e.at(R"(greenlang_rate_limiter_tokens{key="factor_api"})") == Approx(0).margin(1e-9));
  CHECK(e.at(R"(greenlang_rate_limiter_requests_total{key="factor_api",result="allowed"})") == 3);
  CHECK(e.at(R"(greenlang_rate_limiter_requests_total{key="factor_api",result="rejected"})") == 2);
  CHECK(e.at(R"(greenlang_rate_limiter_violations_total{key="factor_api"})") == 1);
  CHECK(e.at(R"(greenlang_rate_limiter_tokens{key="llm \"api\""})") == 1);

  clk.advance(200ms);  // two tokens back
  e = parse(m.render());
  CHECK(e.at(R"(greenlang_rate_limiter_tokens{key="factor_api"})") == Approx(2));
}

TEST_CASE("watching a rate_limiter turns grant counting on for good", "[metrics]") {
  // Grants are not counted by default (limiter_options::count_grants is
  // false); requests_total{result="allowed"} needs them, so watch() turns
  // counting on, for keys configured before and after it, and a later
  // configure() asking for no counting does not turn it off.
  manual_clock clk;
  rate_limiter limits{clk};
  limits.configure("factor_api", {.requests_per_second = 10, .burst_size = 5});
  CHECK(limits.try_acquire("factor_api"));  // before the watch: not counted
  metrics_registry m{local_only()};
  m.watch(limits);
  limits.configure("llm", {.requests_per_second = 5, .burst_size = 2});
  CHECK(limits.try_acquire("factor_api"));
  CHECK(limits.try_acquire("llm"));
  limits.configure("factor_api", {.requests_per_second = 20, .burst_size = 5, .count_grants = false});
  CHECK(limits.try_acquire("factor_api", "acme"));
  const auto e = parse(m.render());
  CHECK(e.at(R"(greenlang_rate_limiter_requests_total{key="factor_api",result="allowed"})") == 2);
  CHECK(e.at(R"(greenlang_rate_limiter_requests_total{key="llm",result="allowed"})") == 1);
  CHECK(limits.stats("factor_api").config.count_grants);
}

TEST_CASE("a watched stand-alone limiter is labelled by its name", "[metrics]") {
  manual_clock clk;
  token_bucket erp{{.requests_per_second = 5, .burst_size = 1}, clk, "erp_api"};
  metrics_registry m{local_only()};
  m.watch(erp);
  (void)erp.try_acquire();
  (void)erp.try_acquire();
  const auto e = parse(m.render());
  CHECK(e.at(R"(greenlang_rate_limiter_requests_total{key="erp_api",result="allowed"})") == 1);
  CHECK(e.at(R"(greenlang_rate_limiter_requests_total{key="erp_api",result="rejected"})") == 1);
  // The violation event was counted but the watched stats win: no duplicate series (parse checks).
  CHECK(e.at(R"(greenlang_rate_limiter_violations_total{key="erp_api"})") == 1);
}

TEST_CASE("a watched degradation manager gives tier, health and tier changes", "[metrics]") {
  manual_clock clk;
  degradation_manager health{{.recover_after_reports = 1, .clock = clk}};
  metrics_registry m{local_only()};
  m.watch(health);
  CHECK_THROWS_AS(m.watch(health), std::logic_error);

  auto e = parse(m.render());
  CHECK(e.at("greenlang_degradation_tier") == 1);
  CHECK(e.at(R"(greenlang_service_health{service="database"})") == 1);

  health.update_health("llm_api", false, 31s, "inference timed out");
  health.update_health("database", false, 0s, "connection refused");
  health.update_health("database", true);
  e = parse(m.render());
  CHECK(e.at("greenlang_degradation_tier") == 2);
  CHECK(e.at(R"(greenlang_service_health{service="llm_api"})") == 0);
  CHECK(e.at(R"(greenlang_service_health{service="database"})") == 1);
  CHECK(e.at(R"(greenlang_degradation_tier_changes_total{from="full",to="core"})") == 1);
  CHECK(e.at(R"(greenlang_degradation_tier_changes_total{from="core",to="maintenance"})") == 1);
  CHECK(e.at(R"(greenlang_degradation_tier_changes_total{from="maintenance",to="core"})") == 1);
}

TEST_CASE("user collectors add their own families", "[metrics]") {
  metrics_registry m{local_only()};
  m.add_collector([](metric_snapshot& s) {
    s.add("factor_cache_entries", metric_type::gauge, "Entries in the factor cache.", {{"region", "eu"}}, 17);
  });
  CHECK_THROWS_AS(m.add_collector({}), std::invalid_argument);
  const auto e = parse(m.render());
  CHECK(e.at(R"(greenlang_factor_cache_entries{region="eu"})") == 17);
  CHECK(e.types.at("greenlang_factor_cache_entries") == "gauge");
}

TEST_CASE("a watched circuit breaker: state, calls, transitions, failure rate, durations", "[metrics]") {
  manual_clock clk;
  circuit_breaker erp{{.name = "erp_api", .clock = clk, .fail_max = 2, .break_duration = 10s}};
  metrics_registry m{local_only()};
  m.watch(erp, call_durations::always);
  m.watch(erp);  // again: nothing changes
  CHECK_THROWS_AS(m.watch(circuit_breaker{{.name = "erp_api"}}), std::logic_error);

  auto slow_ok = [&] {
    clk.advance(30ms);
    return 1;
  };
  auto slow_fail = [&]() -> int {
    clk.advance(2s);
    throw std::runtime_error{"ERP 502"};
  };
  CHECK(erp.try_call(slow_ok).has_value());
  CHECK(erp.try_call(slow_fail).has_exception());
  CHECK(erp.try_call(slow_fail).has_exception());  // opens
  CHECK(erp.try_call(slow_ok).has_rejection());

  auto e = parse(m.render());
  CHECK(e.at(R"(greenlang_circuit_breaker_state{name="erp_api"})") == 1);
  CHECK(e.at(R"(greenlang_circuit_breaker_calls_total{name="erp_api",status="success"})") == 1);
  CHECK(e.at(R"(greenlang_circuit_breaker_calls_total{name="erp_api",status="failure"})") == 2);
  CHECK(e.at(R"(greenlang_circuit_breaker_calls_total{name="erp_api",status="rejected"})") == 1);
  CHECK(e.at(R"(greenlang_circuit_breaker_state_transitions_total{name="erp_api",from="closed",to="open"})") == 1);
  // Consecutive mode: open after fail_max failures in a row reads 1 (it read 2/3, a lifetime ratio).
  CHECK(e.at(R"(greenlang_circuit_breaker_failure_rate{name="erp_api"})") == 1);
  CHECK(e.at(R"(greenlang_circuit_breaker_call_duration_seconds_bucket{name="erp_api",le="0.05"})") == 1);
  CHECK(e.at(R"(greenlang_circuit_breaker_call_duration_seconds_bucket{name="erp_api",le="2.5"})") == 3);
  CHECK(e.at(R"(greenlang_circuit_breaker_call_duration_seconds_count{name="erp_api"})") ==
        3);  // rejections are not timed
  CHECK(e.at(R"(greenlang_circuit_breaker_call_duration_seconds_sum{name="erp_api"})") == Approx(4.03));

  clk.advance(10s);
  CHECK(erp.try_call(slow_ok).has_value());  // trial closes it
  e = parse(m.render());
  CHECK(e.at(R"(greenlang_circuit_breaker_state{name="erp_api"})") == 0);
  CHECK(e.at(R"(greenlang_circuit_breaker_state_transitions_total{name="erp_api",from="open",to="half_open"})") == 1);
  CHECK(e.at(R"(greenlang_circuit_breaker_state_transitions_total{name="erp_api",from="half_open",to="closed"})") == 1);
}

TEST_CASE("call durations are kept by default only for a breaker that times its calls anyway", "[metrics]") {
  manual_clock clk;
  circuit_breaker db{{.name = "database", .clock = clk}};  // consecutive mode: never reads its clock
  circuit_breaker llm{{.name = "llm_api",
                       .clock = clk,
                       .window = breaker_window::count_based,
                       .slow_call_duration = 20s}};  // times every call for slow-call tracking
  circuit_breaker erp{
      {.name = "erp_api", .clock = clk, .window = breaker_window::count_based, .slow_call_duration = 5s}};
  metrics_registry m{local_only()};
  m.watch(db);
  m.watch(llm);
  m.watch(erp, call_durations::never);
  const auto answer = [&] {
    clk.advance(3s);
    return 1;
  };
  for (auto* cb : {&db, &llm, &erp}) CHECK(cb->try_call(answer).has_value());

  const auto e = parse(m.render());
  CHECK(e.at(R"(greenlang_circuit_breaker_calls_total{name="database",status="success"})") == 1);
  CHECK_FALSE(e.has(R"(greenlang_circuit_breaker_call_duration_seconds_count{name="database"})"));
  CHECK(e.at(R"(greenlang_circuit_breaker_call_duration_seconds_count{name="llm_api"})") == 1);
  CHECK(e.at(R"(greenlang_circuit_breaker_call_duration_seconds_bucket{name="llm_api",le="2.5"})") == 0);
  CHECK(e.at(R"(greenlang_circuit_breaker_call_duration_seconds_bucket{name="llm_api",le="5"})") == 1);
  CHECK(e.at(R"(greenlang_circuit_breaker_call_duration_seconds_sum{name="llm_api"})") == Approx(3.0));
  CHECK(e.at(R"(greenlang_circuit_breaker_calls_total{name="erp_api",status="success"})") == 1);
  CHECK_FALSE(e.has(R"(greenlang_circuit_breaker_call_duration_seconds_count{name="erp_api"})"));
}

TEST_CASE("a watched breaker registry includes breakers created later", "[metrics]") {
  circuit_breaker_registry breakers;
  metrics_registry m{local_only()};
  m.watch(breakers, call_durations::always);
  auto llm = breakers.get_or_create("llm_api", {.fail_max = 1});
  (void)llm.try_call([]() -> int { throw std::runtime_error{"HTTP 500"}; });
  auto e = parse(m.render());
  CHECK(e.at(R"(greenlang_circuit_breaker_state{name="llm_api"})") == 1);
  CHECK(e.at(R"(greenlang_circuit_breaker_calls_total{name="llm_api",status="failure"})") == 1);
  // Durations are recorded from the first scrape that saw the breaker.
  CHECK(e.at(R"(greenlang_circuit_breaker_call_duration_seconds_count{name="llm_api"})") == 0);

  llm.reset();
  (void)llm.try_call([] { return 1; });
  e = parse(m.render());
  CHECK(e.at(R"(greenlang_circuit_breaker_call_duration_seconds_count{name="llm_api"})") == 1);
  CHECK(e.at(R"(greenlang_circuit_breaker_state_transitions_total{name="llm_api",from="open",to="closed"})") == 1);
}

TEST_CASE("events of a watched breaker do not duplicate its series", "[metrics]") {
  metrics_registry m;  // global events too
  circuit_breaker cb{{.name = "metrics_test_dupe", .fail_max = 1}};
  m.watch(cb);
  (void)cb.try_call([]() -> int { throw std::runtime_error{"x"}; });
  (void)cb.try_call([] { return 1; });  // rejected: a circuit_rejected event too
  const auto e = parse(m.render());     // parse fails on a duplicate series
  CHECK(e.at(R"(greenlang_circuit_breaker_calls_total{name="metrics_test_dupe",status="rejected"})") == 1);
  CHECK(
      e.at(R"(greenlang_circuit_breaker_state_transitions_total{name="metrics_test_dupe",from="closed",to="open"})") ==
      1);
}

TEST_CASE("a watched bulkhead: in flight, waiting, limit, rejections", "[metrics]") {
  bulkhead db{{.name = "database", .max_concurrent_calls = 2}};
  metrics_registry m;  // global events too: the rejection event must not add a second series
  m.watch(db);
  auto a = db.try_acquire();
  auto b = db.try_acquire();
  auto refused = db.try_acquire();
  CHECK_FALSE(refused);
  auto e = parse(m.render());
  CHECK(e.at(R"(greenlang_bulkhead_in_flight_calls{name="database"})") == 2);
  CHECK(e.at(R"(greenlang_bulkhead_waiting_calls{name="database"})") == 0);
  CHECK(e.at(R"(greenlang_bulkhead_max_concurrent_calls{name="database"})") == 2);
  CHECK(e.at(R"(greenlang_bulkhead_rejections_total{name="database"})") == 1);
  a.release();
  e = parse(m.render());
  CHECK(e.at(R"(greenlang_bulkhead_in_flight_calls{name="database"})") == 1);
}

TEST_CASE("bad names from a collector are refused, not written", "[metrics]") {
  metric_snapshot s;
  CHECK_THROWS_AS(s.add("bad-name", metric_type::gauge, "", {}, 1), std::invalid_argument);
  CHECK_THROWS_AS(s.add("ok", metric_type::gauge, "", {{"bad:label", "x"}}, 1), std::invalid_argument);
  CHECK_THROWS_AS(s.add("ok", metric_type::gauge, "", {{"le", "x"}}, 1), std::invalid_argument);
  s.declare("twice", metric_type::gauge, "");
  CHECK_THROWS_AS(s.declare("twice", metric_type::counter, ""), std::logic_error);
}

TEST_CASE("a collector may call watch() and add_collector() on its own registry", "[metrics]") {
  metrics_registry m{local_only()};
  bulkhead db{{.name = "database", .max_concurrent_calls = 2}};
  bool added = false;
  m.add_collector([&](metric_snapshot&) {
    if (added) return;
    added = true;
    m.watch(db);  // deadlocked before: render held the registry's lock while collecting
    m.add_collector(
        [](metric_snapshot& s) { s.add("late_gauge", metric_type::gauge, "Added by a collector.", {}, 7); });
  });
  auto e = parse(m.render());
  CHECK_FALSE(e.has(R"(greenlang_bulkhead_max_concurrent_calls{name="database"})"));  // in force from the next scrape
  e = parse(m.render());
  CHECK(e.at(R"(greenlang_bulkhead_max_concurrent_calls{name="database"})") == 2);
  CHECK(e.at("greenlang_late_gauge") == 7);
}

TEST_CASE("a collector that renders its own registry gets std::logic_error, not a hang", "[metrics]") {
  metrics_registry m{local_only()};
  metrics_registry other{local_only()};
  other.add_collector([](metric_snapshot& s) { s.add("other_gauge", metric_type::gauge, "", {}, 1); });
  bool threw = false;
  std::string nested;
  m.add_collector([&](metric_snapshot&) {
    nested = other.render();  // another registry: fine
    try {
      (void)m.render();
    } catch (const std::logic_error& e) {
      threw = std::string{e.what()}.find("render()") != std::string::npos;
    }
  });
  (void)m.render();
  CHECK(threw);
  CHECK(nested.find("other_gauge 1") != std::string::npos);
  // A collector that lets it through fails that scrape only.
  metrics_registry r{local_only()};
  r.add_collector([&](metric_snapshot&) { (void)r.render(); });
  CHECK_THROWS_AS(r.render(), std::logic_error);
  CHECK_THROWS_AS(r.render(), std::logic_error);  // and the next: nothing stayed marked
}

TEST_CASE("label values with invalid UTF-8 are written as U+FFFD, one series per value as read", "[metrics]") {
  hub_owner policy;
  metrics_registry m{local_only()};
  m.count_events_of(policy);
  const std::string fffd = "\xef\xbf\xbd";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"a\xff", "a" + fffd},                                   // a byte that never starts a character
      {"b\xc0\xaf", "b" + fffd + fffd},                        // overlong '/'
      {"c\xe0\x80\xaf", "c" + fffd + fffd + fffd},             // overlong, 3 bytes
      {"d\xed\xa0\x80", "d" + fffd + fffd + fffd},             // UTF-16 surrogate
      {"e\xf4\x90\x80\x80", "e" + fffd + fffd + fffd + fffd},  // beyond U+10FFFF
      {"f\xe2\x82", "f" + fffd + fffd},                        // truncated at the end
      {"\xe2\x82"
       "g",
       fffd + fffd + "g"},  // truncated at the start
      {"CO\xe2\x82\x82"
       "e",
       "CO\xe2\x82\x82"
       "e"},  // valid: unchanged
  };
  for (const auto& c : cases)  // (clang 14 cannot capture a structured binding)
    detail::emit(&policy.events(), [&] { return retry_attempted(c.first, 1, 1s, "503"); });
  // Two names that read the same once sanitised are one series, counted together.
  detail::emit(&policy.events(), [] { return retry_attempted("a\xfe", 1, 1s, "503"); });
  detail::emit(&policy.events(),
               [] { return circuit_state_changed("cb\xff", circuit_state::closed, circuit_state::open); });

  const auto text = m.render();
  CHECK(strict_utf8(text));
  const auto e = parse(text);  // fails on a duplicate series
  for (const auto& [raw, shown] : cases) {
    INFO(shown);
    CHECK(e.at("greenlang_retry_attempts_total{operation=\"" + shown + "\"}") == (shown == "a" + fffd ? 2 : 1));
  }
  CHECK(e.at("greenlang_circuit_breaker_state{name=\"cb" + fffd + "\"}") == 1);
}

TEST_CASE("a watched object's name with invalid UTF-8 is sanitised too", "[metrics]") {
  metrics_registry m{local_only()};
  circuit_breaker cb{{.name = "erp\xff"}};
  token_bucket tb{{.requests_per_second = 5, .burst_size = 1}, {}, "tb\xc0"};
  bulkhead bh{{.name = "bh\xed\xa0\x80", .max_concurrent_calls = 1}};
  m.watch(cb);
  m.watch(tb);
  m.watch(bh);
  const auto text = m.render();
  CHECK(strict_utf8(text));
  const auto e = parse(text);
  CHECK(e.at("greenlang_circuit_breaker_state{name=\"erp\xef\xbf\xbd\"}") == 0);
  CHECK(e.at("greenlang_rate_limiter_tokens{key=\"tb\xef\xbf\xbd\"}") == 1);
  CHECK(e.at("greenlang_bulkhead_max_concurrent_calls{name=\"bh\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"}") == 1);
}

TEST_CASE("two watched objects of one kind with one name: the second is refused by name", "[metrics]") {
  metrics_registry m{local_only()};
  const auto refused = [](auto&& watch_it, std::string_view name) {
    try {
      watch_it();
    } catch (const std::invalid_argument& e) {
      return std::string{e.what()}.find(name) != std::string::npos;
    }
    return false;
  };

  bulkhead db1{{.name = "database", .max_concurrent_calls = 2}};
  bulkhead db2{{.name = "database", .max_concurrent_calls = 3}};
  m.watch(db1);
  m.watch(db1);  // the same bulkhead again: nothing
  CHECK(refused([&] { m.watch(db2); }, "database"));

  manual_clock clk;
  token_bucket erp1{{.requests_per_second = 5, .burst_size = 1}, clk, "erp_api"};
  token_bucket erp2{{.requests_per_second = 5, .burst_size = 2}, clk, "erp_api"};
  m.watch(erp1);
  m.watch(token_bucket{erp1});  // a copy shares the state: the same limiter
  CHECK(refused([&] { m.watch(erp2); }, "erp_api"));

  circuit_breaker cb1{{.name = "llm_api"}};
  circuit_breaker cb2{{.name = "llm_api"}};
  m.watch(cb1);
  m.watch(cb1);
  CHECK(refused([&] { m.watch(cb2); }, "llm_api"));

  // Names that would read the same in the scrape collide as well.
  bulkhead x1{{.name = "x\xff", .max_concurrent_calls = 1}};
  bulkhead x2{{.name = "x\xfe", .max_concurrent_calls = 1}};
  m.watch(x1);
  CHECK_THROWS_AS(m.watch(x2), std::invalid_argument);

  const auto e = parse(m.render());  // fails on a duplicate series
  CHECK(e.at(R"(greenlang_bulkhead_max_concurrent_calls{name="database"})") == 2);
  CHECK(e.at(R"(greenlang_rate_limiter_tokens{key="erp_api"})") == 1);
}

TEST_CASE("limiter registries sharing a key: the first watched writes it, once", "[metrics]") {
  manual_clock clk;
  rate_limiter a{clk};
  rate_limiter b{clk};
  a.configure("shared", {.requests_per_second = 5, .burst_size = 1});
  b.configure("shared", {.requests_per_second = 5, .burst_size = 3});
  b.configure("only_b", {.requests_per_second = 5, .burst_size = 4});
  token_bucket standalone{{.requests_per_second = 5, .burst_size = 9}, clk, "only_b"};
  metrics_registry m{local_only()};
  m.watch(a);
  m.watch(a);  // the same registry again: nothing
  m.watch(b);
  m.watch(standalone);
  const auto e = parse(m.render());  // fails on a duplicate series
  CHECK(e.at(R"(greenlang_rate_limiter_tokens{key="shared"})") == 1);
  CHECK(e.at(R"(greenlang_rate_limiter_tokens{key="only_b"})") == 4);
}

TEST_CASE("failure_rate of a consecutive-mode breaker is what it decides on", "[metrics]") {
  manual_clock clk;
  circuit_breaker cb{{.name = "factor_api", .clock = clk, .fail_max = 5}};
  metrics_registry m{local_only()};
  m.watch(cb);
  const auto rate = [&] {
    return parse(m.render()).at(R"(greenlang_circuit_breaker_failure_rate{name="factor_api"})");
  };
  for (int i = 0; i < 100; ++i) (void)cb.try_call([] { return 1; });
  CHECK(rate() == 0);
  for (int i = 0; i < 2; ++i) (void)cb.try_call([]() -> int { throw std::runtime_error{"503"}; });
  CHECK(rate() == Approx(0.4));  // 2 in a row of the 5 that open it
  for (int i = 0; i < 3; ++i) (void)cb.try_call([]() -> int { throw std::runtime_error{"503"}; });
  REQUIRE(cb.state() == circuit_state::open);
  CHECK(rate() == 1);  // was 5 / 105 = 0.048, a lifetime ratio
  cb.reset();
  CHECK(rate() == 0);
}

TEST_CASE("a wrapper names its calls: with_operation, or the timeout's operation type", "[metrics]") {
  manual_clock clk{manual_clock::auto_advance};
  metrics_registry m{local_only()};
  const retry r{{.max_retries = 1, .base_delay = 10ms}};
  m.count_events_of(r);
  auto failing = []() -> int { throw std::runtime_error{"503"}; };

  auto by_type = resilient{failing, r, timeout{operation_type::llm_inference}}.with_clock(clk);
  (void)by_type.try_call();
  auto named = resilient{failing, r}.with_clock(clk).with_operation("factor_lookup");
  (void)named.try_call();
  (void)named.try_call_with({.operation = "per_call"});  // the call's own name wins
  auto piped = pipeline{r}.with_clock(clk).with_operation("erp_sync");
  (void)piped.try_execute(failing);
  (void)piped.wrap(failing).try_call();

  const auto e = parse(m.render());
  CHECK(e.at(R"(greenlang_retry_attempts_total{operation="llm_inference"})") == 1);
  CHECK(e.at(R"(greenlang_retry_attempts_total{operation="factor_lookup"})") == 1);
  CHECK(e.at(R"(greenlang_retry_attempts_total{operation="per_call"})") == 1);
  CHECK(e.at(R"(greenlang_retry_attempts_total{operation="erp_sync"})") == 2);
  CHECK_FALSE(e.has(R"(greenlang_retry_attempts_total{operation=""})"));
}

TEST_CASE("presets::make names its calls after the operation type", "[metrics]") {
  manual_clock clk{manual_clock::auto_advance};
  circuit_breaker_registry breakers;
  rate_limiter limits{clk};
  const presets::sources src{.breakers = &breakers, .limits = &limits, .clock = clk};
  metrics_registry m;  // global events: the preset's own retry is counted
  auto query = presets::make(
      operation_type::database_query, environment::production,
      [](std::stop_token) -> int { throw std::runtime_error{"connection refused"}; }, src);
  CHECK(query.policies().operation() == "database_query");
  (void)query.try_call();
  const auto e = parse(m.render());
  CHECK(e.at(R"(greenlang_retry_attempts_total{operation="database_query"})") == 3);
  CHECK(e.at(R"(greenlang_retry_exhausted_total{operation="database_query"})") == 1);
}
