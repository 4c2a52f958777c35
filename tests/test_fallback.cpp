#include <resilience/bulkhead.hpp>
#include <resilience/cache.hpp>
#include <resilience/circuit_breaker.hpp>
#include <resilience/fallback.hpp>
#include <resilience/rate_limit.hpp>
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>
#include <resilience/timeout.hpp>

#include <catch2/catch.hpp>

#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/messages.hpp"

using namespace resilience;
using namespace support;
using namespace std::chrono_literals;

namespace {

struct factor_api_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A scripted fake: each call pops the next step (throw, reject, or return).
struct script {
  std::shared_ptr<std::vector<int>> steps;  // >= 0: return it; -1: throw factor_api_error; -2: throw logic_error
  std::shared_ptr<int> calls = std::make_shared<int>(0);
  double operator()(const std::string&) const {
    const int step = (*steps)[static_cast<std::size_t>((*calls)++)];
    if (step == -1) throw factor_api_error{"factor api 503"};
    if (step == -2) throw std::logic_error{"bad activity"};
    return step;
  }
};
script make_script(std::vector<int> steps) { return script{std::make_shared<std::vector<int>>(std::move(steps))}; }

// A policy that rejects every call, as an open breaker would.
struct always_reject {
  const rejection_kind& kind;
  template <class Next>
  auto execute(call_context& ctx, Next&&) const {
    using O = std::remove_cvref_t<std::invoke_result_t<Next&, call_context&>>;
    (void)ctx;
    return O{rejection{.kind = &kind, .source = "factor_api"}};
  }
};

}  // namespace

TEST_CASE("fallback default_value replaces any failure and leaves success alone", "[fallback]") {
  resilient r{make_script({5, -1, -2}), fallback{default_value{0.0}}};
  CHECK(r("electricity") == 5.0);
  CHECK(r("electricity") == 0.0);
  CHECK(r("electricity") == 0.0);
}

TEST_CASE("fallback_to calls another source, which may see the failure and the arguments", "[fallback]") {
  std::string seen_reason, seen_arg;
  resilient r{make_script({-1}), fallback{fallback_to{[&](const failure& why, const std::string& activity) {
                seen_reason = why.what();
                seen_arg = activity;
                CHECK(why.is<factor_api_error>());
                return 1.5;
              }}}};
  CHECK(r("natural gas") == 1.5);
  CHECK(seen_reason == "factor api 503");
  CHECK(seen_arg == "natural gas");

  resilient no_args{make_script({-1}), fallback{fallback_to{[] { return 2.5; }}}};
  CHECK(no_args("x") == 2.5);
}

TEST_CASE("fallback none turns the result into an empty optional on failure", "[fallback]") {
  resilient r{make_script({3, -1}), fallback{none}};
  std::optional<double> ok = r("a");
  CHECK(ok == 3.0);
  std::optional<double> failed = r("a");
  CHECK_FALSE(failed.has_value());
}

TEST_CASE("fallback raise keeps the failure: the same exception object reaches the caller", "[fallback]") {
  auto boom = std::make_exception_ptr(factor_api_error{"x"});
  resilient r{[&](int) -> int { std::rethrow_exception(boom); }, fallback{raise}};
  auto result = r.try_call(1);
  REQUIRE(result.has_exception());
  CHECK(result.exception() == boom);
}

TEST_CASE("cached fallback serves the last good result for the same arguments, reporting its age", "[fallback]") {
  manual_clock clk;
  result_cache<std::string, double> factors{{.ttl = 1min, .max_age = 1h, .clock = clk}};
  std::optional<duration> age;
  bool stale = false;
  resilient r{make_script({7, 9, -1, -1, -1}),
              fallback{cached{factors}, {.on_activated = [&](const fallback_info& info) {
                         CHECK(info.strategy == "cached");
                         age = info.age;
                         stale = info.stale;
                       }}}};
  r.with_clock(clk);
  CHECK(r("electricity") == 7.0);
  CHECK(r("natural gas") == 9.0);
  clk.advance(5min);
  CHECK(r("electricity") == 7.0);  // served stale, only because the call failed
  CHECK(age == 5min);
  CHECK(stale);
  CHECK(r("natural gas") == 9.0);
  CHECK_THROWS_AS(r("diesel"), factor_api_error);  // nothing cached for diesel: the failure stands
}

TEST_CASE("cached fallback with a key function", "[fallback]") {
  result_cache<std::string, int> c;
  int calls = 0;
  resilient r{[&](const std::string&, int year) {
                if (calls++ > 0) throw factor_api_error{"down"};
                return year;
              },
              fallback{cached{c, [](const std::string& activity, int) { return activity; }}}};
  CHECK(r("steel", 2023) == 2023);
  CHECK(r("steel", 2024) == 2023);  // keyed by activity only
  CHECK(c.size() == 1);
}

TEST_CASE("chain tries cached, then a secondary source, then a default, in order", "[fallback]") {
  result_cache<std::string, double> c;
  std::vector<std::string> used;
  int secondary_calls = 0;
  resilient r{make_script({4, -1, -1, -1}),
              fallback{chain{cached{c}, fallback_to{[&](const std::string& activity) -> double {
                               ++secondary_calls;
                               if (activity == "steel") return 2.0;
                               throw std::runtime_error{"secondary down too"};
                             }},
                             default_value{0.0}},
                       {.on_activated = [&](const fallback_info& i) { used.emplace_back(i.strategy); }}}};
  CHECK(r("electricity") == 4.0);
  CHECK(r("electricity") == 4.0);
  CHECK(r("steel") == 2.0);
  CHECK(r("cement") == 0.0);
  CHECK(used == std::vector<std::string>{"cached", "function", "default"});
  CHECK(secondary_calls == 2);

  resilient ends_raising{make_script({-1}), fallback{chain{cached{c}, raise}}};
  CHECK_THROWS_AS(ends_raising("diesel"), factor_api_error);
}

TEST_CASE("handle: exception type lists", "[fallback]") {
  resilient r{make_script({-1, -2}),
              fallback{default_value{0.0}, {.handle = failures::exceptions<factor_api_error>()}}};
  CHECK(r("a") == 0.0);
  CHECK_THROWS_AS(r("a"), std::logic_error);
}

TEST_CASE("handle: the failures retry takes work here too", "[fallback]") {
  resilient r{make_script({-1, -2}),
              fallback{default_value{0.0}, {.handle = failures::exceptions<factor_api_error>()}}};
  CHECK(r("a") == 0.0);
  CHECK_THROWS_AS(r("a"), std::logic_error);
  resilient only_open{[](int) { return 1; },
                      fallback{default_value{-1}, {.handle = failures::rejections(kind_set{circuit_open_kind})}},
                      always_reject{circuit_open_kind}};
  CHECK(only_open(0) == -1);
  resilient limited{[](int) { return 1; },
                    fallback{default_value{-1}, {.handle = failures::rejections(kind_set{circuit_open_kind})}},
                    always_reject{rate_limited_kind}};
  CHECK_THROWS_AS(limited(0), rate_limit_exceeded);
}

TEST_CASE("handle: rejection kinds, and exception types that match rejections", "[fallback]") {
  resilient only_open{[](int) { return 1; },
                      fallback{default_value{-1}, {.handle = failures::rejections({circuit_open_kind})}},
                      always_reject{circuit_open_kind}};
  CHECK(only_open(0) == -1);
  resilient limited{[](int) { return 1; },
                    fallback{default_value{-1}, {.handle = failures::rejections({circuit_open_kind})}},
                    always_reject{rate_limited_kind}};
  CHECK_THROWS_AS(limited(0), rate_limit_exceeded);
  resilient by_type{[](int) { return 1; },
                    fallback{default_value{-1}, {.handle = failures::exceptions<circuit_open_error>()}},
                    always_reject{circuit_open_kind}};
  CHECK(by_type(0) == -1);
  resilient by_base{[](int) { return 1; },
                    fallback{default_value{-1}, {.handle = failures::exceptions<rejected_error>()}},
                    always_reject{bulkhead_full_kind}};
  CHECK(by_base(0) == -1);
}

TEST_CASE("handle: predicate and combination", "[fallback]") {
  auto only_503 = failures::when([](const failure& f) { return f.what().find("503") != std::string::npos; });
  resilient r{make_script({-1, -2}), fallback{default_value{0.0}, {.handle = only_503}}};
  CHECK(r("a") == 0.0);
  CHECK_THROWS_AS(r("a"), std::logic_error);

  resilient either{make_script({-1, -2}),
                   fallback{default_value{0.0}, {.handle = failures::exceptions<std::logic_error>() | only_503}}};
  CHECK(either("a") == 0.0);
  CHECK(either("a") == 0.0);
}

TEST_CASE("handle: a result predicate treats some values as failures", "[fallback]") {
  std::vector<bool> causes;
  auto fb = fallback{default_value{99},
                     {.handle = failures::results([](const int& v) { return v < 0; }),
                      .on_activated = [&](const fallback_info& i) { causes.push_back(i.cause.is_result()); }}};
  resilient r{[](int x) { return x; }, fb};
  CHECK(r(-4) == 99);
  CHECK(r(4) == 4);
  CHECK(causes == std::vector<bool>{true});
  resilient thrower{[](int) -> int { throw factor_api_error{"x"}; }, fb};
  CHECK_THROWS_AS(thrower(1), factor_api_error);  // results() only
}

TEST_CASE("fallback reports through the callback and the fallback_activated event", "[fallback]") {
  auto fb = fallback{default_value{0.0}};
  int events = 0;
  std::string reason, strategy;
  fb.events().subscribe([&](const event& e) {
    if (e.is(fallback_activated_event)) {
      ++events;
      reason = e.get<std::string_view>("reason");
      strategy = e.get<std::string_view>("strategy");
      CHECK(e.operation() == "factor_lookup");
    }
  });
  resilient r{make_script({-1, 1}), fb};
  CHECK(r.call_with({.operation = "factor_lookup"}, "a") == 0.0);
  CHECK(r.call_with({.operation = "factor_lookup"}, "a") == 1.0);
  CHECK(events == 1);
  CHECK(reason == "factor api 503");
  CHECK(strategy == "default");
}

TEST_CASE("fallback outside retry and timeout replaces what they finally return", "[fallback]") {
  manual_clock clk{manual_clock::auto_advance};
  resilient r{make_script({-1, -1, -1}),
              fallback{default_value{0.5}, {.handle = failures::exceptions<factor_api_error>()}},
              retry{{.max_retries = 2, .base_delay = 1s}}, timeout{{.limit = 5s, .mode = timeout_mode::cooperative}}};
  r.with_clock(clk);
  CHECK(r("a") == 0.5);
}

namespace {

// A value whose conversion to double throws, as a default_value's may.
struct bad_default {
  explicit operator double() const { throw std::domain_error{"no default"}; }
};

}  // namespace

TEST_CASE("a throwing results() predicate becomes the call's failure, not std::terminate", "[fallback][hooks]") {
  // The reproducer of issue #11, item 1.
  resilient f{[] { return 1; },
              fallback{default_value{0}, {.handle = failures::any() | failures::results([](const int&) -> bool {
                                                      throw std::logic_error{"p"};
                                                    })}}};
  const auto o = f.try_call();
  REQUIRE(o.has_exception());
  CHECK(failure_text(o) == "p");
  CHECK_THROWS_AS(f(), std::logic_error);  // the user's exception, unchanged
}

TEST_CASE("a throwing default_value conversion and cached key function become the call's failure",
          "[fallback][hooks]") {
  resilient conv{[]() -> double { throw factor_api_error{"503"}; }, fallback{default_value{bad_default{}}}};
  CHECK(failure_text(conv.try_call()) == "no default");

  result_cache<std::string, double> cache;
  int calls = 0;
  resilient keyed{[&calls](const std::string&) -> double {
                    if (++calls > 1) throw factor_api_error{"503"};
                    return 2.5;
                  },
                  fallback{cached{cache, [&calls](const std::string& s) -> std::string {
                                    if (calls > 1) throw std::length_error{"key"};
                                    return s;
                                  }}}};
  CHECK(keyed("grid") == 2.5);
  CHECK(failure_text(keyed.try_call("grid")) == "key");  // the recovery path's key throws
}

TEST_CASE("async: a throwing results() predicate completes the future with its exception", "[fallback][hooks][async]") {
  manual_executor ex;
  resilient f{[] { return 1; },
              fallback{default_value{0}, {.handle = failures::any() | failures::results([](const int&) -> bool {
                                                      throw std::logic_error{"p"};
                                                    })}}};
  f.with_executor(ex);
  auto fut = f.async();
  ex.run_all();
  REQUIRE(fut.wait_for(0s) == std::future_status::ready);
  CHECK_THROWS_AS(fut.get(), std::logic_error);
}

TEST_CASE("a cached fallback's cache runs on the pipeline's clock, or the pipeline refuses it", "[fallback][clock]") {
  manual_clock clk;
  result_cache<std::string, double> cache{{.ttl = 30s, .max_age = 1min, .clock = clk}};
  int calls = 0;
  resilient r{[&](const std::string&) -> double {
                if (++calls > 1) throw std::runtime_error{"factor API down"};
                return 1.5;
              },
              fallback{cached{cache}}};
  CHECK(r.policies().clock() == clock_ref{clk});  // adopted from the cache
  CHECK(r("steel") == 1.5);
  clk.advance(30s);
  CHECK(r("steel") == 1.5);  // from the cache, 30 s old
  clk.advance(31s);
  CHECK_THROWS_AS(r("steel"), std::runtime_error);  // expired on the pipeline's time line
  CHECK_THROWS_AS(r.with_clock(steady_clock{}),
                  std::invalid_argument);  // a cache on another clock would never expire in a test
}
