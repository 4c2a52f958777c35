#include <resilience/bulkhead.hpp>
#include <resilience/circuit_breaker.hpp>
#include <resilience/metrics.hpp>
#include <resilience/resilient.hpp>
#include <resilience/fallback.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace resilience;
using namespace std::chrono_literals;

namespace {

// The text parsed into series -> value, plus the HELP/TYPE lines seen.
struct exposition {
  std::map<std::string, double> samples;         // "name{labels}" -> value
  std::map<std::string, std::string> types;      // family -> type
  std::map<std::string, int> help_lines;         // family -> count
  std::vector<std::string> sample_order;         // series names in output order

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

  detail::emit(hub, [] { return retry_attempted{"factor_lookup", 1, 1s, "503"}; });
  detail::emit(hub, [] { return retry_attempted{"factor_lookup", 2, 2s, "503"}; });
  detail::emit(hub, [] { return retries_exhausted{"factor_lookup", 3, "503"}; });
  detail::emit(hub, [] { return timeout_occurred{"llm_inference", 30s}; });
  detail::emit(hub, [] { return fallback_activated{"report", "default", "db down"}; });
  detail::emit(hub, [] { return rate_limit_violated{"factor_api", "acme", 100ms}; });
  detail::emit(hub, [] { return bulkhead_rejected{"database", 10}; });
  detail::emit(hub, [] { return circuit_state_changed{"erp_api", circuit_state::closed, circuit_state::open}; });
  detail::emit(hub, [] { return circuit_rejected{"erp_api", circuit_state::open, 60s}; });
  detail::emit(hub, [] { return tier_changed{tier::full, tier::core, "llm_api"}; });
  detail::emit(hub, [] { return service_health_changed{"llm_api", false, 31s, "slow"}; });

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
  metrics_registry m;  // global
  m.count_events_of(policy);  // already counted globally: no second subscription
  detail::emit(&policy.events(), [] { return timeout_occurred{"metrics_test_once", 1s}; });
  CHECK(parse(m.render()).at(R"(greenlang_timeouts_total{operation="metrics_test_once"})") == 1);
}

TEST_CASE("label values escape backslash, quote and newline", "[metrics]") {
  hub_owner policy;
  metrics_registry m{local_only()};
  m.count_events_of(policy);
  detail::emit(&policy.events(), [] { return bulkhead_rejected{"db \"main\"\\\nshard", 1}; });
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
      detail::emit(&policy.events(), [&] { return rate_limit_violated{round % 2 ? "erp" : "llm", "", 1s}; });
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
        for (int i = 0; i < per_thread; ++i) detail::emit(&policy.events(), [&] { return timeout_occurred{op, 1s}; });
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
  // Grants are not counted by default (rate_limit_config::count_grants is
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
  circuit_breaker erp{{.name = "erp_api", .clock = clk, .fail_max = 2, .timeout_duration = 10s}};
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
  CHECK(e.at(R"(greenlang_circuit_breaker_failure_rate{name="erp_api"})") == Approx(2.0 / 3.0));
  CHECK(e.at(R"(greenlang_circuit_breaker_call_duration_seconds_bucket{name="erp_api",le="0.05"})") == 1);
  CHECK(e.at(R"(greenlang_circuit_breaker_call_duration_seconds_bucket{name="erp_api",le="2.5"})") == 3);
  CHECK(e.at(R"(greenlang_circuit_breaker_call_duration_seconds_count{name="erp_api"})") == 3);  // rejections are not timed
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
  circuit_breaker erp{{.name = "erp_api", .clock = clk, .window = breaker_window::count_based, .slow_call_duration = 5s}};
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
  const auto e = parse(m.render());  // parse fails on a duplicate series
  CHECK(e.at(R"(greenlang_circuit_breaker_calls_total{name="metrics_test_dupe",status="rejected"})") == 1);
  CHECK(e.at(R"(greenlang_circuit_breaker_state_transitions_total{name="metrics_test_dupe",from="closed",to="open"})") == 1);
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
