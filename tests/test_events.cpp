#include <resilience/degradation.hpp>
#include <resilience/events.hpp>
#include <resilience/fallback.hpp>
#include <resilience/rate_limit.hpp>
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>
#include <resilience/timeout.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace resilience;
using namespace std::chrono_literals;

namespace {

// Records the names of the events it sees; the vector is guarded by the
// caller (single-threaded tests) or replaced by a counter in threaded ones.
struct recorder {
  std::vector<std::string>* names;
  void operator()(const event& e) const { names->emplace_back(event_name(e)); }
};

// Unsubscribes from the global hub at the end of a test, even a failing one,
// so tests do not leak listeners into each other.
struct global_subscription {
  event_hub::subscription id;
  explicit global_subscription(event_hub::listener fn) : id{global_events().subscribe(std::move(fn))} {}
  ~global_subscription() { global_events().unsubscribe(id); }
  global_subscription(const global_subscription&) = delete;
  global_subscription& operator=(const global_subscription&) = delete;
};

}  // namespace

TEST_CASE("a hub delivers each event once, in order, to every listener", "[events]") {
  event_hub hub;
  std::vector<std::string> a, b;
  hub.subscribe(recorder{&a});
  hub.subscribe(recorder{&b});

  hub.publish(retry_attempted{"factor_lookup", 1, 1s, "HTTP 503"});
  hub.publish(retry_attempted{"factor_lookup", 2, 2s, "HTTP 503"});
  hub.publish(retries_exhausted{"factor_lookup", 3, "HTTP 503"});

  const std::vector<std::string> expected{"retry_attempted", "retry_attempted", "retries_exhausted"};
  CHECK(a == expected);
  CHECK(b == expected);
}

TEST_CASE("listeners see the event's fields", "[events]") {
  event_hub hub;
  circuit_state_changed seen{};
  hub.subscribe([&](const event& e) {
    REQUIRE(std::holds_alternative<circuit_state_changed>(e));
    seen = std::get<circuit_state_changed>(e);
  });
  hub.publish(circuit_state_changed{"erp_api", circuit_state::closed, circuit_state::open});
  CHECK(seen.name == "erp_api");
  CHECK(seen.from == circuit_state::closed);
  CHECK(seen.to == circuit_state::open);
}

TEST_CASE("a throwing listener never stops delivery or the publisher", "[events]") {
  event_hub hub;
  std::vector<std::string> after;
  hub.subscribe([](const event&) { throw std::runtime_error{"listener bug"}; });
  hub.subscribe([](const event&) { throw 42; });  // not even a std::exception
  hub.subscribe(recorder{&after});

  CHECK_NOTHROW(hub.publish(timeout_occurred{"llm_inference", 30s}));
  CHECK_NOTHROW(detail::emit(&hub, [] { return bulkhead_rejected{"database", 10}; }));
  CHECK(after == std::vector<std::string>{"timeout_occurred", "bulkhead_rejected"});
}

TEST_CASE("unsubscribe stops delivery and reports unknown ids", "[events]") {
  event_hub hub;
  CHECK_FALSE(hub.active());
  CHECK_FALSE(hub.unsubscribe(1));

  std::vector<std::string> a, b;
  const auto ida = hub.subscribe(recorder{&a});
  const auto idb = hub.subscribe(recorder{&b});
  CHECK(ida != idb);
  CHECK(hub.active());

  hub.publish(tier_changed{tier::full, tier::core, "llm"});
  CHECK(hub.unsubscribe(ida));
  CHECK_FALSE(hub.unsubscribe(ida));
  CHECK(hub.active());
  hub.publish(tier_changed{tier::core, tier::full, "llm"});
  CHECK(hub.unsubscribe(idb));
  CHECK_FALSE(hub.active());
  hub.publish(tier_changed{tier::full, tier::maintenance, "database"});

  CHECK(a.size() == 1);
  CHECK(b.size() == 2);
}

TEST_CASE("a listener may unsubscribe itself while being called", "[events]") {
  event_hub hub;
  int calls = 0;
  event_hub::subscription id = 0;
  id = hub.subscribe([&](const event&) {
    ++calls;
    hub.unsubscribe(id);
  });
  hub.publish(bulkhead_rejected{"report_generator", 2});
  hub.publish(bulkhead_rejected{"report_generator", 2});
  CHECK(calls == 1);
  CHECK_FALSE(hub.active());
}

TEST_CASE("emit builds nothing when nobody listens", "[events]") {
  event_hub hub;
  int built = 0;
  detail::emit(&hub, [&] {
    ++built;
    return timeout_occurred{"database", 10s};
  });
  detail::emit(nullptr, [&] {
    ++built;
    return timeout_occurred{"database", 10s};
  });
  CHECK(built == 0);
}

TEST_CASE("emit reaches the instance hub and the global hub once each", "[events]") {
  event_hub hub;
  std::vector<std::string> local, global;
  hub.subscribe(recorder{&local});
  global_subscription g{recorder{&global}};

  int built = 0;
  detail::emit(&hub, [&] {
    ++built;
    return rate_limit_violated{"factor_api", "tenant-7", 100ms};
  });
  // A policy without its own hub still reaches the global one.
  detail::emit(nullptr, [] { return service_health_changed{"llm", false, 30s, "HTTP 500"}; });

  CHECK(built == 1);  // built once, delivered twice
  CHECK(local == std::vector<std::string>{"rate_limit_violated"});
  CHECK(global == std::vector<std::string>{"rate_limit_violated", "service_health_changed"});
}

TEST_CASE("emit swallows a failure to build the event", "[events]") {
  event_hub hub;
  std::vector<std::string> seen;
  hub.subscribe(recorder{&seen});
  CHECK_NOTHROW(detail::emit(&hub, []() -> fallback_activated { throw std::bad_alloc{}; }));
  CHECK(seen.empty());
}

TEST_CASE("event_name names every alternative", "[events]") {
  CHECK(event_name(retry_attempted{}) == "retry_attempted");
  CHECK(event_name(retries_exhausted{}) == "retries_exhausted");
  CHECK(event_name(timeout_occurred{}) == "timeout_occurred");
  CHECK(event_name(fallback_activated{}) == "fallback_activated");
  CHECK(event_name(rate_limit_violated{}) == "rate_limit_violated");
  CHECK(event_name(circuit_state_changed{}) == "circuit_state_changed");
  CHECK(event_name(circuit_rejected{}) == "circuit_rejected");
  CHECK(event_name(bulkhead_rejected{}) == "bulkhead_rejected");
  CHECK(event_name(tier_changed{}) == "tier_changed");
  CHECK(event_name(service_health_changed{}) == "service_health_changed");
  CHECK(to_string(circuit_state::half_open) == "half_open");
}

TEST_CASE("concurrent publishers and subscribers: every event delivered exactly once per listener", "[events]") {
  event_hub hub;
  std::atomic<int> stable{0};
  hub.subscribe([&](const event&) { stable.fetch_add(1, std::memory_order_relaxed); });

  constexpr int threads = 4, per_thread = 500;
  std::vector<std::jthread> publishers;
  for (int t = 0; t < threads; ++t)
    publishers.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) detail::emit(&hub, [] { return circuit_rejected{"db", circuit_state::open, 1s}; });
    });
  // Meanwhile listeners come and go; the stable one must still see everything.
  for (int i = 0; i < 200; ++i) {
    const auto id = hub.subscribe([](const event&) {});
    hub.unsubscribe(id);
  }
  publishers.clear();
  CHECK(stable.load() == threads * per_thread);
}

namespace {

// Describes each event in one line, for exact comparisons of scripted scenarios.
struct describe {
  std::string operator()(const retry_attempted& e) const {
    return "retry_attempted " + std::string{e.operation} + " #" + std::to_string(e.attempt) + " wait " +
           std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(e.delay).count()) + "ms: " + e.failure;
  }
  std::string operator()(const retries_exhausted& e) const {
    return "retries_exhausted " + std::string{e.operation} + " after " + std::to_string(e.attempts) + ": " + e.failure;
  }
  std::string operator()(const timeout_occurred& e) const {
    return "timeout_occurred " + std::string{e.operation} + " " +
           std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(e.limit).count()) + "ms";
  }
  std::string operator()(const fallback_activated& e) const {
    return "fallback_activated " + std::string{e.operation} + " " + std::string{e.strategy} + ": " + e.reason;
  }
  std::string operator()(const rate_limit_violated& e) const {
    return "rate_limit_violated " + std::string{e.key} + "/" + std::string{e.tenant};
  }
  std::string operator()(const tier_changed& e) const {
    return "tier_changed " + std::string{to_string(e.from)} + "->" + std::string{to_string(e.to)} + " by " + std::string{e.cause};
  }
  std::string operator()(const service_health_changed& e) const {
    return "service_health_changed " + std::string{e.service} + (e.healthy ? " healthy" : " unhealthy");
  }
  template <class Other>
  std::string operator()(const Other& e) const {
    return std::string{event_name(e)};
  }
};

// Everything the process emits during a test, described, in order.
struct global_log {
  std::shared_ptr<std::vector<std::string>> lines = std::make_shared<std::vector<std::string>>();
  global_subscription sub{[l = lines](const event& e) { l->push_back(std::visit(describe{}, e)); }};
};

}  // namespace

TEST_CASE("scripted: retry, then fallback, each event once and in order", "[events]") {
  global_log log;
  manual_clock clk{manual_clock::auto_advance};
  int calls = 0;
  auto lookup = resilient{[&]() -> double {
                            ++calls;
                            throw std::runtime_error{"HTTP 503"};
                          },
                          fallback{default_value{0.0}}, retry{{.max_retries = 2, .base_delay = 1s}}}
                    .with_clock(clk);
  CHECK(lookup.try_call_with({.operation = "factor_lookup"}).value() == 0.0);
  CHECK(calls == 3);
  CHECK(*log.lines == std::vector<std::string>{
                          "retry_attempted factor_lookup #1 wait 1000ms: HTTP 503",
                          "retry_attempted factor_lookup #2 wait 2000ms: HTTP 503",
                          "retries_exhausted factor_lookup after 3: HTTP 503",
                          "fallback_activated factor_lookup default: HTTP 503",
                      });
}

TEST_CASE("scripted: a timeout per attempt inside a retry", "[events]") {
  global_log log;
  manual_clock clk{manual_clock::auto_advance};
  auto explain = resilient{[&](std::stop_token) {
                             clk.advance(31s);
                             return std::string{"because"};
                           },
                           retry{{.max_retries = 1, .base_delay = 1s}},
                           timeout{{.limit = 30s, .mode = timeout_mode::cooperative}}}
                     .with_clock(clk);
  CHECK(explain.try_call_with({.operation = "llm_inference"}).has_rejection());
  REQUIRE(log.lines->size() == 4);
  CHECK((*log.lines)[0] == "timeout_occurred llm_inference 30000ms");
  CHECK((*log.lines)[1].rfind("retry_attempted llm_inference #1 wait 1000ms", 0) == 0);
  CHECK((*log.lines)[2] == "timeout_occurred llm_inference 30000ms");
  CHECK((*log.lines)[3].rfind("retries_exhausted llm_inference after 2", 0) == 0);
}

TEST_CASE("scripted: rate limit refusals, one event each", "[events]") {
  global_log log;
  manual_clock clk;
  rate_limiter limits{clk};
  limits.configure("erp_api", {.requests_per_second = 1, .burst_size = 1});
  auto pull = resilient{[] { return 1; }, rate_limit{limits, "erp_api"}};
  CHECK(pull.try_call_with({.tenant = "acme"}).has_value());
  CHECK(pull.try_call_with({.tenant = "acme"}).has_rejection());
  CHECK(pull.try_call_with({.tenant = "globex"}).has_value());
  CHECK(pull.try_call_with({.tenant = "acme"}).has_rejection());
  CHECK(*log.lines == std::vector<std::string>{"rate_limit_violated erp_api/acme", "rate_limit_violated erp_api/acme"});
}

TEST_CASE("scripted: health reports move the tier, each change once", "[events]") {
  global_log log;
  manual_clock clk;
  degradation_manager health{{.recover_after_reports = 1, .clock = clk}};
  health.update_health("llm_api", false, 31s, "inference timed out");
  health.update_health("llm_api", false, 31s, "inference timed out");  // no change: no event
  health.update_health("database", false, 0s, "connection refused");
  health.update_health("llm_api", true);
  health.update_health("database", true);
  const auto& l = *log.lines;
  const auto count = [&](const std::string& s) { return std::count(l.begin(), l.end(), s); };
  CHECK(l.size() == 7);  // four health changes, three tier changes (llm_api recovering leaves maintenance)
  CHECK(count("service_health_changed llm_api unhealthy") == 1);
  CHECK(count("service_health_changed database unhealthy") == 1);
  CHECK(count("service_health_changed llm_api healthy") == 1);
  CHECK(count("service_health_changed database healthy") == 1);
  // The tier changes, in the order they happened.
  std::vector<std::string> tiers;
  std::copy_if(l.begin(), l.end(), std::back_inserter(tiers), [](const std::string& s) { return s.rfind("tier_changed", 0) == 0; });
  CHECK(tiers == std::vector<std::string>{"tier_changed full->core by llm_api", "tier_changed core->maintenance by database",
                                          "tier_changed maintenance->full by database"});
}
