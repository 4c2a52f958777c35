#include <resilience/events.hpp>

#include <catch2/catch.hpp>

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
