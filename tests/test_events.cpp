#include <resilience/degradation.hpp>
#include <resilience/events.hpp>
#include <resilience/fallback.hpp>
#include <resilience/rate_limit.hpp>
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>
#include <resilience/timeout.hpp>

#include <catch2/catch.hpp>

#include "support/events.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace resilience;
using namespace support;
using namespace std::chrono_literals;

namespace {

// Records the names of the events it sees; the vector is guarded by the
// caller (single-threaded tests) or replaced by a counter in threaded ones.
struct recorder {
  std::vector<std::string>* names;
  void operator()(const event& e) const { names->emplace_back(e.name()); }
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

  hub.publish(retry_attempted("factor_lookup", 1, 1s, "HTTP 503"));
  hub.publish(retry_attempted("factor_lookup", 2, 2s, "HTTP 503"));
  hub.publish(retries_exhausted("factor_lookup", 3, "HTTP 503"));

  const std::vector<std::string> expected{"retry_attempted", "retry_attempted", "retries_exhausted"};
  CHECK(a == expected);
  CHECK(b == expected);
}

TEST_CASE("listeners see the event's fields", "[events]") {
  event_hub hub;
  std::string name;
  circuit_state from{}, to{};
  hub.subscribe([&](const event& e) {
    REQUIRE(e.is(circuit_state_changed_event));
    name = e.source();
    from = circuit_state_of(e.get<std::string_view>("from"));
    to = circuit_state_of(e.get<std::string_view>("to"));
  });
  hub.publish(circuit_state_changed("erp_api", circuit_state::closed, circuit_state::open));
  CHECK(name == "erp_api");
  CHECK(from == circuit_state::closed);
  CHECK(to == circuit_state::open);
}

TEST_CASE("a throwing listener never stops delivery or the publisher", "[events]") {
  event_hub hub;
  std::vector<std::string> after;
  hub.subscribe([](const event&) { throw std::runtime_error{"listener bug"}; });
  hub.subscribe([](const event&) { throw 42; });  // not even a std::exception
  hub.subscribe(recorder{&after});

  CHECK_NOTHROW(hub.publish(timeout_occurred("llm_inference", 30s)));
  CHECK_NOTHROW(detail::emit(&hub, [] { return bulkhead_rejected("database", 10); }));
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

  hub.publish(tier_changed(tier::full, tier::core, "llm"));
  CHECK(hub.unsubscribe(ida));
  CHECK_FALSE(hub.unsubscribe(ida));
  CHECK(hub.active());
  hub.publish(tier_changed(tier::core, tier::full, "llm"));
  CHECK(hub.unsubscribe(idb));
  CHECK_FALSE(hub.active());
  hub.publish(tier_changed(tier::full, tier::maintenance, "database"));

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
  hub.publish(bulkhead_rejected("report_generator", 2));
  hub.publish(bulkhead_rejected("report_generator", 2));
  CHECK(calls == 1);
  CHECK_FALSE(hub.active());
}

TEST_CASE("emit builds nothing when nobody listens", "[events]") {
  event_hub hub;
  int built = 0;
  detail::emit(&hub, [&] {
    ++built;
    return timeout_occurred("database", 10s);
  });
  detail::emit(nullptr, [&] {
    ++built;
    return timeout_occurred("database", 10s);
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
    return rate_limit_violated("factor_api", "tenant-7", 100ms);
  });
  // A policy without its own hub still reaches the global one.
  detail::emit(nullptr, [] { return service_health_changed("llm", false, 30s, "HTTP 500"); });

  CHECK(built == 1);  // built once, delivered twice
  CHECK(local == std::vector<std::string>{"rate_limit_violated"});
  CHECK(global == std::vector<std::string>{"rate_limit_violated", "service_health_changed"});
}

TEST_CASE("emit swallows a failure to build the event", "[events]") {
  event_hub hub;
  std::vector<std::string> seen;
  hub.subscribe(recorder{&seen});
  CHECK_NOTHROW(detail::emit(&hub, []() -> event { throw std::bad_alloc{}; }));
  CHECK(seen.empty());
}

TEST_CASE("every event kind has its name", "[events]") {
  CHECK(retry_attempted("", 1, 1s, "").name() == "retry_attempted");
  CHECK(retries_exhausted("", 1, "").name() == "retries_exhausted");
  CHECK(timeout_occurred("", 1s).name() == "timeout_occurred");
  CHECK(fallback_activated("", "", "").name() == "fallback_activated");
  CHECK(rate_limit_violated("", "", 1s).name() == "rate_limit_violated");
  CHECK(circuit_state_changed("", circuit_state::closed, circuit_state::open).name() == "circuit_state_changed");
  CHECK(circuit_rejected("", circuit_state::open, 1s).name() == "circuit_rejected");
  CHECK(bulkhead_rejected("", 1).name() == "bulkhead_rejected");
  CHECK(tier_changed(tier::full, tier::core, "").name() == "tier_changed");
  CHECK(service_health_changed("", true, 1s, "").name() == "service_health_changed");
  CHECK(to_string(circuit_state::half_open) == "half_open");
}

TEST_CASE("an event's typed fields read back; its owned text survives copies and moves", "[events]") {
  const event e = retry_attempted("factor_lookup", 2, 1500ms, "a failure text longer than any small-string buffer");
  CHECK(e.is(retry_attempted_event));
  CHECK_FALSE(e.is(retries_exhausted_event));
  CHECK(e.kind() == retry_attempted_event);
  CHECK(e.severity() == log_level::warning);
  CHECK(e.operation() == "factor_lookup");
  CHECK(e.get<int>("attempt") == 2);
  CHECK(e.get<duration>("delay") == 1500ms);
  CHECK(e.get<duration>("attempt") == duration::zero());  // another type: the default
  CHECK_FALSE(e.has("missing"));
  event copy = e;
  event moved = std::move(copy);
  CHECK(moved.get<std::string_view>("failure") == "a failure text longer than any small-string buffer");
  event small = retries_exhausted("op", 3, "short");
  event small_moved = std::move(small);
  CHECK(small_moved.get<std::string_view>("failure") == "short");
  event two{fallback_activated_event};
  two.with_text("reason", "first").with_text("strategy", std::string(100, 'x'));
  const event two_copy = two;
  CHECK(two_copy.get<std::string_view>("reason") == "first");
  CHECK(two_copy.get<std::string_view>("strategy") == std::string(100, 'x'));
}

TEST_CASE("concurrent publishers and subscribers: every event delivered exactly once per listener", "[events]") {
  event_hub hub;
  std::atomic<int> stable{0};
  hub.subscribe([&](const event&) { stable.fetch_add(1, std::memory_order_relaxed); });

  constexpr int threads = 4, per_thread = 500;
  std::vector<std::jthread> publishers;
  for (int t = 0; t < threads; ++t)
    publishers.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i)
        detail::emit(&hub, [] { return circuit_rejected("db", circuit_state::open, 1s); });
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
std::string describe(const event& e) {
  const auto text = [&](std::string_view field) { return std::string{e.get<std::string_view>(field)}; };
  const auto ms = [&](std::string_view field) {
    return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(e.get<duration>(field)).count());
  };
  if (e.is(retry_attempted_event))
    return "retry_attempted " + std::string{e.operation()} + " #" + std::to_string(e.get<int>("attempt")) + " wait " +
           ms("delay") + "ms: " + text("failure");
  if (e.is(retries_exhausted_event))
    return "retries_exhausted " + std::string{e.operation()} + " after " + std::to_string(e.get<int>("attempts")) +
           ": " + text("failure");
  if (e.is(timeout_occurred_event)) return "timeout_occurred " + std::string{e.operation()} + " " + ms("limit") + "ms";
  if (e.is(fallback_activated_event))
    return "fallback_activated " + std::string{e.operation()} + " " + text("strategy") + ": " + text("reason");
  if (e.is(rate_limit_violated_event))
    return "rate_limit_violated " + std::string{e.source()} + "/" + std::string{e.tenant()};
  if (e.is(tier_changed_event)) return "tier_changed " + text("from") + "->" + text("to") + " by " + text("cause");
  if (e.is(service_health_changed_event))
    return "service_health_changed " + std::string{e.source()} + (e.get<bool>("healthy") ? " healthy" : " unhealthy");
  return std::string{e.name()};
}

// Everything the process emits during a test, described, in order.
struct global_log {
  std::shared_ptr<std::vector<std::string>> lines = std::make_shared<std::vector<std::string>>();
  global_subscription sub{[l = lines](const event& e) { l->push_back(describe(e)); }};
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
  auto explain =
      resilient{[&](std::stop_token) {
                  clk.advance(31s);
                  return std::string{"because"};
                },
                retry{{.max_retries = 1, .base_delay = 1s}}, timeout{{.limit = 30s, .mode = timeout_mode::cooperative}}}
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
  std::copy_if(l.begin(), l.end(), std::back_inserter(tiers),
               [](const std::string& s) { return s.rfind("tier_changed", 0) == 0; });
  CHECK(tiers == std::vector<std::string>{"tier_changed full->core by llm_api",
                                          "tier_changed core->maintenance by database",
                                          "tier_changed maintenance->full by database"});
}
