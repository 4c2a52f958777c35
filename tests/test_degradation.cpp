#include <resilience/circuit_breaker.hpp>
#include <resilience/degradation.hpp>
#include <resilience/executor.hpp>
#include <resilience/resilient.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/messages.hpp"

using namespace resilience;
using namespace support;
using namespace std::chrono_literals;

namespace {

degradation_options immediate(const manual_clock& clk) {
  degradation_options o;
  o.recover_after_reports = 1;
  o.clock = clk;
  return o;
}

struct tier_log {
  std::vector<std::pair<tier, tier>> changes;
  void attach(degradation_manager& m) {
    m.on_tier_change([this](tier from, tier to) { changes.emplace_back(from, to); });
  }
};

}  // namespace

TEST_CASE("tier helpers order tiers from full to maintenance", "[degradation]") {
  STATIC_REQUIRE(tier_allows(tier::full, tier::core));
  STATIC_REQUIRE(tier_allows(tier::core, tier::core));
  STATIC_REQUIRE_FALSE(tier_allows(tier::read_only, tier::core));
  STATIC_REQUIRE(worse_tier(tier::core, tier::maintenance) == tier::maintenance);
  STATIC_REQUIRE(worse_tier(tier::read_only, tier::full) == tier::read_only);
}

TEST_CASE("default services imply the seed's tiers", "[degradation]") {
  manual_clock clk;
  degradation_manager m{immediate(clk)};
  REQUIRE(m.current_tier() == tier::full);

  const auto snap = m.snapshot();
  REQUIRE(snap.services.size() == 4);
  auto find = [&](std::string_view n) {
    for (const auto& s : snap.services)
      if (s.name == n) return s;
    FAIL("missing service " << n);
    return service_health{};
  };
  CHECK(find("llm_api").implies == tier::core);
  CHECK(find("llm_api").slow_threshold == 30s);
  CHECK(find("factor_api").implies == tier::read_only);
  CHECK(find("factor_api").slow_threshold == 5s);
  CHECK(find("erp_api").implies == tier::read_only);
  CHECK(find("erp_api").slow_threshold == 10s);
  CHECK(find("database").implies == tier::maintenance);
  CHECK(find("database").slow_threshold == 10s);

  CHECK(m.update_health("llm_api", false) == tier::core);
  CHECK(m.update_health("factor_api", false) == tier::read_only);
  CHECK(m.update_health("database", false) == tier::maintenance);
  // The worst unhealthy service wins: recovering a lesser one changes nothing.
  CHECK(m.update_health("factor_api", true) == tier::maintenance);
  CHECK(m.update_health("database", true) == tier::core);
  CHECK(m.update_health("llm_api", true) == tier::full);
}

TEST_CASE("a manager without defaults knows only what is registered", "[degradation]") {
  degradation_manager m{{.register_defaults = false}};
  CHECK_FALSE(m.has_service("llm_api"));
  CHECK(m.snapshot().services.empty());
  m.register_service("report_generator", tier::core, 60s);
  CHECK(m.has_service("report_generator"));
  CHECK(m.health("report_generator")->slow_threshold == 60s);
}

TEST_CASE("an unknown service in update_health is an error naming it", "[degradation]") {
  degradation_manager m;
  const tier before = m.current_tier();
  try {
    m.update_health("factr_api", false);
    FAIL("update_health accepted an unknown service");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string{e.what()}.find("'factr_api'") != std::string::npos);
  }
  CHECK_FALSE(m.has_service("factr_api"));
  CHECK(m.current_tier() == before);
}

TEST_CASE("unknown_service_tier registers unknown services on first report", "[degradation]") {
  manual_clock clk;
  auto o = immediate(clk);
  o.unknown_service_tier = tier::core;
  degradation_manager m{o};
  CHECK(m.update_health("geocoder", false, 1s, "dns failure") == tier::core);
  REQUIRE(m.has_service("geocoder"));
  const auto h = *m.health("geocoder");
  CHECK(h.implies == tier::core);
  CHECK(h.slow_threshold == default_slow_threshold);
  CHECK_FALSE(h.healthy);
  CHECK(h.last_error == "dns failure");
}

TEST_CASE("an empty service name is refused by every entry point, unknown_service_tier or not", "[degradation]") {
  manual_clock clk;
  auto o = immediate(clk);
  o.unknown_service_tier = tier::core;
  degradation_manager m{o};
  circuit_breaker cb{{.clock = clk}};
  const auto before = m.snapshot().services.size();
  CHECK_THROWS_WITH(m.register_service("", tier::core), Catch::Contains("register_service") && Catch::Contains("name"));
  CHECK_THROWS_WITH(m.update_health("", false), Catch::Contains("update_health") && Catch::Contains("name"));
  CHECK_THROWS_WITH(m.bind(cb, ""), Catch::Contains("bind") && Catch::Contains("name"));
  CHECK_FALSE(m.has_service(""));
  CHECK(m.snapshot().services.size() == before);
  CHECK(m.current_tier() == tier::full);
}

TEST_CASE("a response slower than the threshold counts as unhealthy", "[degradation]") {
  manual_clock clk;
  degradation_manager m{immediate(clk)};
  CHECK(m.update_health("factor_api", true, 5s) == tier::full);  // at the threshold: fine
  CHECK(m.update_health("factor_api", true, 5s + 1ns) == tier::read_only);
  const auto h = *m.health("factor_api");
  CHECK_FALSE(h.healthy);
  CHECK_FALSE(h.last_report_healthy);
  CHECK(h.last_response_time == 5s + 1ns);
  CHECK(h.last_error == "slower than its threshold");
  CHECK(m.update_health("factor_api", true, 100ms) == tier::full);
}

TEST_CASE("on_tier_change is called exactly once per change, in order", "[degradation]") {
  manual_clock clk;
  degradation_manager m{immediate(clk)};
  tier_log log;
  log.attach(m);

  m.update_health("llm_api", false);
  m.update_health("llm_api", false);  // no change, no call
  m.update_health("erp_api", false);
  m.update_health("factor_api", false);  // still read_only
  m.update_health("erp_api", true);      // factor_api keeps it read_only
  m.update_health("factor_api", true);
  m.update_health("llm_api", true);
  m.update_health("llm_api", true);

  const std::vector<std::pair<tier, tier>> want{
      {tier::full, tier::core}, {tier::core, tier::read_only}, {tier::read_only, tier::core}, {tier::core, tier::full}};
  CHECK(log.changes == want);
}

TEST_CASE("listeners can be removed, and a throwing listener does not stop the others", "[degradation]") {
  manual_clock clk;
  degradation_manager m{immediate(clk)};
  int first = 0, second = 0;
  const auto id = m.on_tier_change([&](tier, tier) { ++first; });
  m.on_tier_change([](tier, tier) { throw std::runtime_error{"listener bug"}; });
  m.on_tier_change([&](tier, tier) { ++second; });

  CHECK_NOTHROW(m.update_health("database", false));
  CHECK(first == 1);
  CHECK(second == 1);
  CHECK(m.remove_tier_listener(id));
  CHECK_FALSE(m.remove_tier_listener(id));
  m.update_health("database", true);
  CHECK(first == 1);
  CHECK(second == 2);
}

TEST_CASE("a listener may report health itself; its change is delivered after", "[degradation]") {
  manual_clock clk;
  degradation_manager m{immediate(clk)};
  tier_log log;
  m.on_tier_change([&](tier, tier to) {
    // Losing the database takes the ERP connector with it.
    if (to == tier::maintenance) m.update_health("erp_api", false);
  });
  log.attach(m);
  m.update_health("database", false);
  m.update_health("database", true);
  const std::vector<std::pair<tier, tier>> want{{tier::full, tier::maintenance}, {tier::maintenance, tier::read_only}};
  CHECK(log.changes == want);
  CHECK(m.current_tier() == tier::read_only);
}

TEST_CASE("recovery needs K consecutive healthy reports by default", "[degradation]") {
  manual_clock clk;
  degradation_manager m{{.clock = clk}};
  REQUIRE(degradation_options{}.recover_after_reports == 3);
  REQUIRE(degradation_options{}.recover_after_time == duration::zero());

  m.update_health("llm_api", false, 0s, "HTTP 503");
  CHECK(m.update_health("llm_api", true) == tier::core);
  CHECK(m.update_health("llm_api", true) == tier::core);
  CHECK(m.health("llm_api")->consecutive_healthy == 2);
  CHECK(m.update_health("llm_api", false) == tier::core);  // the streak starts over
  CHECK(m.update_health("llm_api", true) == tier::core);
  CHECK(m.update_health("llm_api", true) == tier::core);
  CHECK(m.health("llm_api")->last_error == "reported unhealthy");
  CHECK(m.update_health("llm_api", true) == tier::full);
  CHECK(m.health("llm_api")->last_error.empty());
}

TEST_CASE("recovery can require a healthy duration on the manager's clock", "[degradation]") {
  manual_clock clk;
  degradation_manager m{{.recover_after_reports = 1, .recover_after_time = 30s, .clock = clk}};
  m.update_health("factor_api", false);
  CHECK(m.update_health("factor_api", true) == tier::read_only);  // the healthy streak starts now
  clk.advance(29s);
  CHECK(m.update_health("factor_api", true) == tier::read_only);
  clk.advance(1s);
  CHECK(m.update_health("factor_api", true) == tier::full);
  const auto h = *m.health("factor_api");
  CHECK(h.since == clk.now());
  CHECK(h.last_report == clk.now());
}

TEST_CASE("the snapshot reports health, errors, response times and since when", "[degradation]") {
  manual_clock clk;
  degradation_manager m{immediate(clk)};
  const auto t0 = clk.now();
  clk.advance(10s);
  m.update_health("erp_api", false, 2500ms, "SAP returned 502");
  const auto snap = m.snapshot();
  CHECK(snap.current == tier::read_only);
  CHECK(snap.taken_at == t0 + 10s);
  for (const auto& s : snap.services) {
    if (s.name == "erp_api") {
      CHECK_FALSE(s.healthy);
      CHECK(s.last_error == "SAP returned 502");
      CHECK(s.last_response_time == 2500ms);
      CHECK(s.since == t0 + 10s);
      CHECK(s.last_report == t0 + 10s);
    } else {
      CHECK(s.healthy);
      CHECK(s.since == t0);
      CHECK_FALSE(s.last_report.has_value());
    }
  }
  CHECK_FALSE(m.health("nope").has_value());
}

TEST_CASE("re-registering changes the tier; unregistering forgets the service", "[degradation]") {
  manual_clock clk;
  degradation_manager m{immediate(clk)};
  tier_log log;
  log.attach(m);
  m.update_health("llm_api", false);
  m.register_service("llm_api", tier::read_only);  // the LLM became essential
  CHECK(m.current_tier() == tier::read_only);
  CHECK_FALSE(m.health("llm_api")->healthy);
  CHECK(m.unregister_service("llm_api"));
  CHECK_FALSE(m.unregister_service("llm_api"));
  CHECK(m.current_tier() == tier::full);
  const std::vector<std::pair<tier, tier>> want{
      {tier::full, tier::core}, {tier::core, tier::read_only}, {tier::read_only, tier::full}};
  CHECK(log.changes == want);
}

TEST_CASE("bad configuration throws invalid_argument naming the field", "[degradation]") {
  const auto message_of = [](auto&& make) { return invalid_argument_of(make); };
  CHECK_THAT(message_of([] { degradation_manager{{.recover_after_reports = 0}}; }),
             Catch::Contains("recover_after_reports"));
  CHECK_THAT(message_of([] { degradation_manager{{.recover_after_time = -1s}}; }),
             Catch::Contains("recover_after_time"));
  CHECK_THAT(message_of([] { degradation_manager{{.unknown_service_tier = static_cast<tier>(9)}}; }),
             Catch::Contains("unknown_service_tier"));
  degradation_manager m;
  CHECK_THAT(message_of([&] { m.register_service("x", tier::core, 0s); }), Catch::Contains("slow_threshold"));
  CHECK_THAT(message_of([&] { m.register_service("", tier::core); }), Catch::Contains("name"));
  CHECK_THAT(message_of([&] { m.register_service("x", static_cast<tier>(0)); }), Catch::Contains("implies"));
  CHECK_THAT(message_of([&] { degradation_guard{m, static_cast<tier>(7)}; }), Catch::Contains("min_tier"));
}

TEST_CASE("events: tier_changed and service_health_changed, only on changes", "[degradation]") {
  manual_clock clk;
  degradation_manager m{immediate(clk)};
  std::vector<std::string> seen;
  m.events().subscribe([&](const event& e) {
    if (e.is(tier_changed_event))
      seen.push_back("tier " + std::string{e.get<std::string_view>("from")} + "->" +
                     std::string{e.get<std::string_view>("to")} + " by " +
                     std::string{e.get<std::string_view>("cause")});
    else if (e.is(service_health_changed_event))
      seen.push_back("health " + std::string{e.source()} + (e.get<bool>("healthy") ? " up" : " down: ") +
                     std::string{e.get<std::string_view>("error")});
  });
  m.update_health("factor_api", false, 0s, "HTTP 500");
  m.update_health("factor_api", false, 0s, "HTTP 500");
  m.update_health("factor_api", true);
  const std::vector<std::string> want{"health factor_api down: HTTP 500", "tier full->read_only by factor_api",
                                      "health factor_api up", "tier read_only->full by factor_api"};
  CHECK(seen == want);
}

TEST_CASE("the process-wide manager is one instance with the default services", "[degradation]") {
  auto& a = global_degradation_manager();
  auto& b = global_degradation_manager();
  CHECK(&a == &b);
  CHECK(a.has_service("database"));
  CHECK(a.name() == "degradation");
}

TEST_CASE("copies of a manager share one state", "[degradation]") {
  manual_clock clk;
  degradation_manager m{immediate(clk)};
  degradation_manager copy = m;
  copy.update_health("llm_api", false);
  CHECK(m.current_tier() == tier::core);
}

TEST_CASE("degradation_guard rejects below min_tier with current and required tier", "[degradation]") {
  manual_clock clk;
  degradation_manager m{immediate(clk)};
  int calls = 0;
  resilient save{[&](int x) {
                   ++calls;
                   return x;
                 },
                 degradation_guard{m, tier::core}};
  CHECK(save(1) == 1);
  m.update_health("llm_api", false);  // core: still allowed
  CHECK(save(2) == 2);
  m.update_health("erp_api", false);  // read_only: not allowed
  auto r = save.try_call(3);
  REQUIRE(r.has_rejection());
  CHECK(r.rejection().is(degraded_kind));
  CHECK(degraded_kind.current(r.rejection()) == tier::read_only);
  CHECK(degraded_kind.required(r.rejection()) == tier::core);
  CHECK(r.rejection().source == "degradation");
  try {
    save(4);
    FAIL("no exception");
  } catch (const degraded_error& e) {
    CHECK(e.current() == tier::read_only);
    CHECK(e.required() == tier::core);
    CHECK(e.source() == "degradation");
  }
  CHECK(calls == 2);
  m.update_health("erp_api", true);
  CHECK(save(5) == 5);
  CHECK(calls == 3);
}

TEST_CASE("degradation_guard with a fallback value serves it below min_tier", "[degradation]") {
  manual_clock clk;
  degradation_manager m{immediate(clk)};
  int calls = 0;
  degradation_guard guard{m, tier::full, std::string{"[LLM unavailable]"}};
  int fallbacks = 0;
  guard.events().subscribe([&](const event& e) {
    if (e.is(fallback_activated_event)) {
      ++fallbacks;
      CHECK(e.get<std::string_view>("strategy") == "degraded");
      CHECK(e.get<std::string_view>("reason") == "tier 'core' is below 'full'");
      CHECK(e.operation() == "explain");
    }
  });
  resilient explain{[&](const std::string& q) {
                      ++calls;
                      return "answer to " + q;
                    },
                    guard};
  CHECK(explain(std::string{"q1"}) == "answer to q1");
  m.update_health("llm_api", false);
  CHECK(explain.call_with({.operation = "explain"}, std::string{"q2"}) == "[LLM unavailable]");
  CHECK(calls == 1);
  CHECK(fallbacks == 1);
}

TEST_CASE("degradation_guard works for void callables and with the global manager", "[degradation]") {
  int calls = 0;
  resilient ping{[&] { ++calls; }, degradation_guard{tier::maintenance}};
  ping();  // maintenance allows everything
  CHECK(calls == 1);
  CHECK(degradation_guard{tier::core}.manager().name() == global_degradation_manager().name());
}

TEST_CASE("a guard keeps a user's exception unchanged", "[degradation]") {
  degradation_manager m;
  const auto thrown = std::make_shared<std::runtime_error>("factor service down");
  resilient f{[&]() -> int { throw thrown; }, degradation_guard{m, tier::full}};
  bool caught = false;
  try {
    f();
  } catch (const std::shared_ptr<std::runtime_error>& p) {
    caught = p == thrown;
  }
  CHECK(caught);
}

TEST_CASE("stress: many threads report health and call guarded functions", "[degradation][stress]") {
  manual_clock clk;
  degradation_manager m{{.recover_after_reports = 2, .clock = clk}};
  std::mutex log_mutex;
  std::vector<std::pair<tier, tier>> changes;
  m.on_tier_change([&](tier from, tier to) {
    std::lock_guard lock{log_mutex};
    changes.emplace_back(from, to);
  });
  std::atomic<int> tier_events{0};
  m.events().subscribe([&](const event& e) {
    if (e.is(tier_changed_event)) tier_events.fetch_add(1, std::memory_order_relaxed);
  });

  std::atomic<int> served{0}, degraded{0}, ran{0};
  resilient guarded{[&] {
                      ran.fetch_add(1, std::memory_order_relaxed);
                      return 1;
                    },
                    degradation_guard{m, tier::core}};
  constexpr int reporters = 4, callers = 4, rounds = 2000;
  const char* names[] = {"llm_api", "factor_api", "erp_api", "database"};
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < reporters; ++t)
      threads.emplace_back([&, t] {
        std::mt19937 rng(static_cast<unsigned>(t) + 1);
        for (int i = 0; i < rounds; ++i) m.update_health(names[rng() % 4], rng() % 3 != 0);
      });
    for (int t = 0; t < callers; ++t)
      threads.emplace_back([&] {
        for (int i = 0; i < rounds; ++i) {
          auto r = guarded.try_call();
          if (r.has_value()) served.fetch_add(1, std::memory_order_relaxed);
          else if (r.has_rejection() && r.rejection().is(degraded_kind) &&
                   !tier_allows(degraded_kind.current(r.rejection()), tier::core))
            degraded.fetch_add(1, std::memory_order_relaxed);
        }
      });
  }
  CHECK(served + degraded == callers * rounds);
  CHECK(ran == served);
  // Every change was heard exactly once and in order: the changes form one chain.
  REQUIRE_FALSE(changes.empty());
  CHECK(changes.front().first == tier::full);
  for (std::size_t i = 1; i < changes.size(); ++i) {
    CHECK(changes[i - 1].second == changes[i].first);
    CHECK(changes[i].first != changes[i].second);
  }
  CHECK(changes.back().second == m.current_tier());
  CHECK(tier_events == static_cast<int>(changes.size()));
  // The tier agrees with the services' final health.
  tier expected = tier::full;
  for (const auto& s : m.snapshot().services)
    if (!s.healthy) expected = worse_tier(expected, s.implies);
  CHECK(m.current_tier() == expected);
}

TEST_CASE("degradation_guard in async calls: admitted calls run, refused ones complete at once", "[degradation]") {
  manual_clock clk;
  degradation_manager m{immediate(clk)};
  manual_executor ex;
  int calls = 0;
  auto llm = resilient{[&](int x) {
                         ++calls;
                         return x * 2;
                       },
                       degradation_guard{m, tier::full, -1}}
                 .with_executor(ex);
  auto served = llm.async(21);
  ex.run_all();
  CHECK(served.get() == 42);
  m.update_health("llm_api", false);
  auto fallback = llm.async(21);
  ex.run_all();
  CHECK(fallback.get() == -1);
  CHECK(calls == 1);

  auto strict = resilient{[] { return 1; }, degradation_guard{m, tier::full}}.with_executor(ex);
  auto refused = strict.async();
  ex.run_all();
  CHECK_THROWS_AS(refused.get(), degraded_error);
}

namespace {

void fail_on(const circuit_breaker& cb) {
  auto r = cb.try_call([]() -> int { throw std::runtime_error{"HTTP 503"}; });
  REQUIRE(r.has_exception());
}

}  // namespace

TEST_CASE("a bound breaker holds its service unhealthy while open, until its break ends", "[degradation]") {
  manual_clock clk;
  degradation_manager m{{.clock = clk}};  // default hysteresis: 3 healthy reports
  circuit_breaker cb{{.name = "factor_http", .clock = clk, .fail_max = 2, .break_duration = 60s}};
  tier_log log;
  log.attach(m);
  m.bind(cb, "factor_api");
  CHECK(m.current_tier() == tier::full);

  fail_on(cb);
  CHECK(m.current_tier() == tier::full);
  fail_on(cb);  // opens
  REQUIRE(cb.state() == circuit_state::open);
  CHECK(m.current_tier() == tier::read_only);
  auto h = *m.health("factor_api");
  CHECK_FALSE(h.healthy);
  CHECK(h.open_breakers == 1);
  CHECK(h.last_error == "circuit breaker 'factor_http' is open");
  // Healthy reports do not outvote an open breaker.
  for (int i = 0; i < 5; ++i) m.update_health("factor_api", true);
  CHECK(m.current_tier() == tier::read_only);

  // The end of the break releases the hold with no call and no hysteresis.
  clk.advance(59s);
  CHECK(m.current_tier() == tier::read_only);
  clk.advance(1s);
  CHECK(cb.state() == circuit_state::half_open);
  CHECK(m.current_tier() == tier::full);

  fail_on(cb);  // the trial fails: open again
  CHECK(m.current_tier() == tier::read_only);
  clk.advance(60s);
  CHECK(m.current_tier() == tier::full);
  CHECK(cb.try_call([] { return 1; }).has_value());  // a good trial closes it
  CHECK(cb.state() == circuit_state::closed);
  CHECK(m.current_tier() == tier::full);

  const std::vector<std::pair<tier, tier>> want{{tier::full, tier::read_only},
                                                {tier::read_only, tier::full},
                                                {tier::full, tier::read_only},
                                                {tier::read_only, tier::full}};
  CHECK(log.changes == want);
}

TEST_CASE("bind sees a breaker that is already open; unbind releases it", "[degradation]") {
  manual_clock clk;
  degradation_manager m{immediate(clk)};
  circuit_breaker cb{{.name = "erp", .clock = clk, .fail_max = 1}};
  fail_on(cb);
  const auto id = m.bind(cb, "erp_api");
  CHECK(m.current_tier() == tier::read_only);
  CHECK(m.unbind(id));
  CHECK_FALSE(m.unbind(id));
  CHECK(m.current_tier() == tier::full);
  cb.reset();
  fail_on(cb);  // no longer bound: no effect
  CHECK(m.current_tier() == tier::full);
}

TEST_CASE("a breaker bound to two services, and two breakers bound to one", "[degradation]") {
  manual_clock clk;
  degradation_manager m{immediate(clk)};
  circuit_breaker db{{.name = "db", .clock = clk, .fail_max = 1}};
  circuit_breaker db_replica{{.name = "db_replica", .clock = clk, .fail_max = 1}};
  m.bind(db, "database");
  m.bind(db_replica, "database");
  m.bind(db, "erp_api");
  fail_on(db);
  fail_on(db_replica);
  CHECK(m.current_tier() == tier::maintenance);
  CHECK(m.health("database")->open_breakers == 2);
  db.reset();
  CHECK(m.current_tier() == tier::maintenance);  // the replica still holds it
  CHECK_FALSE(m.health("erp_api")->open_breakers);
  db_replica.reset();
  CHECK(m.current_tier() == tier::full);
}

TEST_CASE("bind rejects an unknown service; a binding outliving its manager is harmless", "[degradation]") {
  manual_clock clk;
  circuit_breaker cb{{.name = "x", .clock = clk, .fail_max = 1}};
  {
    degradation_manager m{immediate(clk)};
    CHECK_THROWS_AS(m.bind(cb, "geocoder"), std::invalid_argument);
    m.bind(cb, "llm_api");
  }
  fail_on(cb);
  clk.advance(120s);
  CHECK(cb.state() == circuit_state::half_open);
}

TEST_CASE("stress: breakers opening and closing while threads report health and call", "[degradation][stress]") {
  manual_clock clk;
  degradation_manager m{{.recover_after_reports = 2, .clock = clk}};
  circuit_breaker cb{{.name = "factor_http", .clock = clk, .fail_max = 3, .break_duration = 1s}};
  m.bind(cb, "factor_api");
  std::mutex log_mutex;
  std::vector<std::pair<tier, tier>> changes;
  m.on_tier_change([&](tier from, tier to) {
    std::lock_guard lock{log_mutex};
    changes.emplace_back(from, to);
  });
  std::atomic<int> ran{0}, served{0}, degraded{0}, other{0};
  resilient lookup{[&](int i) {
                     ran.fetch_add(1, std::memory_order_relaxed);
                     if (i % 3 != 0) throw std::runtime_error{"HTTP 503"};
                     return i;
                   },
                   degradation_guard{m, tier::core}, cb};
  constexpr int rounds = 1500;
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < 2; ++t)
      threads.emplace_back([&, t] {
        std::mt19937 rng(static_cast<unsigned>(t) + 7);
        const char* names[] = {"llm_api", "erp_api", "database"};
        for (int i = 0; i < rounds; ++i) m.update_health(names[rng() % 3], rng() % 4 != 0);
      });
    for (int t = 0; t < 3; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < rounds; ++i) {
          auto r = lookup.try_call(i + t);
          if (r.has_value()) served.fetch_add(1, std::memory_order_relaxed);
          else if (r.has_rejection() && r.rejection().is(degraded_kind))
            degraded.fetch_add(1, std::memory_order_relaxed);
          else other.fetch_add(1, std::memory_order_relaxed);
        }
      });
    threads.emplace_back([&] {
      for (int i = 0; i < rounds; ++i) clk.advance(10ms);
    });
  }
  CHECK(served + degraded + other == 3 * rounds);
  CHECK(served <= ran);
  REQUIRE_FALSE(changes.empty());
  CHECK(changes.front().first == tier::full);
  for (std::size_t i = 1; i < changes.size(); ++i) CHECK(changes[i - 1].second == changes[i].first);
  CHECK(changes.back().second == m.current_tier());
  const bool open = cb.state() == circuit_state::open;
  CHECK(m.health("factor_api")->open_breakers == (open ? 1 : 0));
}

TEST_CASE("stress: concurrent health reports and tier reads, every tier read one the states imply",
          "[degradation][stress]") {
  manual_clock clk;
  auto o = immediate(clk);
  o.register_defaults = false;
  degradation_manager m{o};
  m.register_service("pinned", tier::core);  // unhealthy throughout: the tier is never full
  m.register_service("llm_api", tier::core);
  m.register_service("erp_api", tier::read_only);
  m.update_health("pinned", false);
  std::mutex mutex;
  std::vector<std::pair<tier, tier>> changes;
  m.on_tier_change([&](tier from, tier to) {
    std::lock_guard lock{mutex};
    changes.emplace_back(from, to);
  });
#ifdef RESILIENCE_TEST_TSAN
  constexpr int reports = 2'000;
#else
  constexpr int reports = 20'000;
#endif
  const char* const services[] = {"llm_api", "erp_api"};
  bool last_report[2] = {true, true};
  std::atomic<int> writers{2};
  std::atomic<bool> bad_read{false};
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < 2; ++t)
      threads.emplace_back([&, t] {
        std::minstd_rand rng{static_cast<unsigned>(t + 1)};
        bool healthy = true;
        for (int i = 0; i < reports; ++i) {
          healthy = rng() % 2 == 0;
          m.update_health(services[t], healthy);
        }
        last_report[t] = healthy;  // each service has one writer: its last report is its final health
        writers.fetch_sub(1);
      });
    for (int t = 0; t < 2; ++t)
      threads.emplace_back([&] {
        while (writers.load() > 0) {
          const tier now = m.current_tier();  // only core (pinned, maybe llm_api) or read_only (erp_api) are implied
          if (now != tier::core && now != tier::read_only) bad_read = true;
          if (m.allows(tier::full)) bad_read = true;
        }
      });
  }
  CHECK_FALSE(bad_read.load());
  const tier expected = last_report[1] ? tier::core : tier::read_only;
  CHECK(m.current_tier() == expected);
  CHECK(m.snapshot().current == expected);
  std::lock_guard lock{mutex};
  auto state = tier::core;
  bool chained = true;
  for (const auto& [from, to] : changes) {
    chained = chained && from == state && from != to;
    state = to;
  }
  CHECK(chained);  // listeners hear the changes in order
  CHECK(state == expected);
}
