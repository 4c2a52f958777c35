#include <resilience/bulkhead.hpp>
#include <resilience/circuit_breaker.hpp>
#include <resilience/rate_limit.hpp>
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>
#include <resilience/timeout.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <climits>
#include <limits>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "support/durations.hpp"
#include "support/messages.hpp"

using namespace resilience;
using namespace support;
using namespace std::chrono_literals;

namespace {

// A failure that remembers which attempt threw it.
struct service_error : std::runtime_error {
  explicit service_error(int attempt)
      : std::runtime_error{"service unavailable (attempt " + std::to_string(attempt) + ")"}, attempt{attempt} {}
  int attempt;
};
struct invalid_factor : std::runtime_error {
  invalid_factor() : std::runtime_error{"invalid factor"} {}
};
struct timeout_like : service_error {
  using service_error::service_error;
};

// [retry-if-http-error]
struct http_error : std::runtime_error {
  explicit http_error(int status) : std::runtime_error{"HTTP " + std::to_string(status)}, status{status} {}
  int status;
};
// [retry-if-http-error]

// [retry-after-hint]
struct too_many_requests : std::runtime_error, retry_after_hint {
  explicit too_many_requests(duration wait) : std::runtime_error{"HTTP 429"}, wait{wait} {}
  std::optional<duration> retry_after() const noexcept override { return wait; }
  duration wait;
};
// [retry-after-hint]

struct http_response {
  int status;
  std::string body;
};

// "Fail `failures` times with service_error, then return 42", counting calls.
struct flaky {
  int failures;
  std::shared_ptr<int> calls = std::make_shared<int>(0);
  int operator()() const {
    if (++*calls <= failures) throw service_error{*calls};
    return 42;
  }
};

// Records the delays on_retry sees.
struct delay_log {
  std::shared_ptr<std::vector<duration>> delays = std::make_shared<std::vector<duration>>();
  std::shared_ptr<std::vector<int>> attempts = std::make_shared<std::vector<int>>();
  void operator()(int attempt, duration delay, const failure&) const {
    attempts->push_back(attempt);
    delays->push_back(delay);
  }
};

// A policy placed inside retry that records the attempt number of the context.
struct record_attempt {
  std::shared_ptr<std::vector<int>> seen = std::make_shared<std::vector<int>>();
  template <class Next>
  auto execute(call_context& ctx, Next&& next) const {
    seen->push_back(ctx.attempt);
    return next(ctx);
  }
};

// A policy that rejects the first `times` calls with `r`, then lets calls through.
struct reject_first {
  int times;
  rejection r;
  std::shared_ptr<int> calls = std::make_shared<int>(0);
  template <class Next>
  auto execute(call_context& ctx, Next&& next) const -> std::remove_cvref_t<decltype(next(ctx))> {
    if (++*calls <= times) return r;
    return next(ctx);
  }
};

}  // namespace

TEST_CASE("defaults: 3 retries after 1, 2, 4 s, then the last failure", "[retry]") {
  manual_clock clk{manual_clock::auto_advance};
  flaky op{100};
  delay_log log;
  auto fetch = resilient{op, retry{{.on_retry = log}}}.with_clock(clk);
  const auto start = clk.now();
  try {
    fetch();
    FAIL("expected service_error");
  } catch (const service_error& e) {
    CHECK(e.attempt == 4);
  }
  CHECK(*op.calls == 4);
  CHECK(*log.delays == seconds_list({1, 2, 4}));
  CHECK(*log.attempts == std::vector<int>{1, 2, 3});
  CHECK(clk.now() - start == 7s);
}

TEST_CASE("a call that recovers returns its value after the exact backoff", "[retry]") {
  manual_clock clk{manual_clock::auto_advance};
  flaky op{2};
  record_attempt rec;
  // [retry-basic]
  resilient fetch{op, retry{{.max_retries = 3, .base_delay = 1s}}, rec};
  // [retry-basic]
  fetch.with_clock(clk);
  const auto start = clk.now();
  CHECK(fetch() == 42);
  CHECK(clk.now() - start == 3s);  // 1 s + 2 s
  CHECK(*rec.seen == std::vector<int>{1, 2, 3});
}

TEST_CASE("each strategy waits its exact sequence through the retry policy", "[retry]") {
  struct row {
    backoff_strategy strategy;
    std::vector<duration> delays;
  };
  for (const auto& [strategy, expected] : {row{backoff_strategy::exponential, seconds_list({1, 2, 4, 8, 16})},
                                           row{backoff_strategy::linear, seconds_list({1, 2, 3, 4, 5})},
                                           row{backoff_strategy::constant, seconds_list({1, 1, 1, 1, 1})},
                                           row{backoff_strategy::fibonacci, seconds_list({1, 1, 2, 3, 5})}}) {
    manual_clock clk{manual_clock::auto_advance};
    delay_log log;
    auto fetch =
        resilient{flaky{100}, retry{{.max_retries = 5, .strategy = strategy, .on_retry = log}}}.with_clock(clk);
    const auto start = clk.now();
    CHECK(fetch.try_call().has_exception());
    CHECK(*log.delays == expected);
    duration total{};
    for (auto d : expected) total += d;
    CHECK(clk.now() - start == total);
  }
}

TEST_CASE("max_retries 0 tries once and never sleeps", "[retry]") {
  manual_clock clk{manual_clock::auto_advance};
  flaky op{1};
  auto fetch = resilient{op, retry{{.max_retries = 0}}}.with_clock(clk);
  const auto start = clk.now();
  CHECK_THROWS_AS(fetch(), service_error);
  CHECK(*op.calls == 1);
  CHECK(clk.now() == start);
}

TEST_CASE("the caller gets the very exception object the last attempt threw", "[retry]") {
  manual_clock clk{manual_clock::auto_advance};
  const service_error* last_thrown = nullptr;
  int calls = 0;
  auto fetch = resilient{[&]() -> int {
                           try {
                             throw service_error{++calls};
                           } catch (const service_error& e) {
                             last_thrown = &e;
                             throw;
                           }
                         },
                         retry{{.max_retries = 2}}}
                   .with_clock(clk);
  try {
    fetch();
    FAIL("expected service_error");
  } catch (const service_error& e) {
    CHECK(&e == last_thrown);
    CHECK(e.attempt == 3);
  }
  auto r = fetch.try_call();
  REQUIRE(r.has_exception());
  try {
    std::rethrow_exception(r.exception());
  } catch (const service_error& e) {
    CHECK(&e == last_thrown);
  }
}

TEST_CASE("except<> fails fast; handle limits what retries", "[retry]") {
  manual_clock clk{manual_clock::auto_advance};
  int calls = 0;
  auto thrower = [&calls](int which) {
    return [&calls, which]() -> int {
      ++calls;
      if (which == 0) throw invalid_factor{};
      if (which == 1) throw timeout_like{calls};
      throw service_error{calls};
    };
  };

  SECTION("except") {
    // [retry-never]
    retry r{{.handle = failures::any().except<invalid_factor, std::logic_error>()}};
    // [retry-never]
    CHECK_THROWS_AS(resilient(thrower(0), r).with_clock(clk)(), invalid_factor);
    CHECK(calls == 1);
    CHECK_THROWS_AS(resilient(thrower(2), r).with_clock(clk)(), service_error);
    CHECK(calls == 5);
  }
  SECTION("exceptions<E> matches a type and its subclasses only") {
    retry r{{.handle = failures::exceptions<timeout_like>() | failures::rejections()}};
    CHECK_THROWS_AS(resilient(thrower(1), r).with_clock(clk)(), timeout_like);
    CHECK(calls == 4);
    calls = 0;
    CHECK_THROWS_AS(resilient(thrower(2), r).with_clock(clk)(), service_error);  // the base is not listed
    CHECK(calls == 1);
    calls = 0;
    retry base{{.handle = failures::exceptions<service_error>() | failures::rejections()}};
    CHECK_THROWS_AS(resilient(thrower(1), base).with_clock(clk)(), timeout_like);  // a subclass of a listed type
    CHECK(calls == 4);
  }
  SECTION("except wins over the rest of handle") {
    retry r{{.handle = (failures::exceptions<service_error>() | failures::rejections()).except<timeout_like>()}};
    CHECK_THROWS_AS(resilient(thrower(1), r).with_clock(clk)(), timeout_like);
    CHECK(calls == 1);
  }
  SECTION("a handle without exceptions retries none") {
    retry r{{.handle = failures::rejections()}};
    CHECK_THROWS_AS(resilient(thrower(2), r).with_clock(clk)(), service_error);
    CHECK(calls == 1);
  }
  SECTION("a non-std exception retries by default and can be listed") {
    auto throw_int = [&calls]() -> int {
      ++calls;
      throw 7;
    };
    CHECK_THROWS_AS(resilient(throw_int, retry{}).with_clock(clk)(), int);
    CHECK(calls == 4);
    calls = 0;
    CHECK_THROWS_AS(resilient(throw_int, retry{{.handle = failures::any().except<int>()}}).with_clock(clk)(), int);
    CHECK(calls == 1);
  }
}

TEST_CASE("exceptions_if decides from the typed exception", "[retry]") {
  manual_clock clk{manual_clock::auto_advance};
  int calls = 0;
  auto status = 503;
  auto op = [&]() -> int {
    ++calls;
    if (status == 0) throw invalid_factor{};
    throw http_error{status};
  };
  // [retry-if]
  retry r{{.handle = failures::exceptions_if([](const http_error& e) { return e.status >= 500 || e.status == 429; }) |
                     failures::rejections()}};
  // [retry-if]
  auto fetch = resilient{op, r}.with_clock(clk);
  CHECK_THROWS_AS(fetch(), http_error);
  CHECK(calls == 4);

  calls = 0;
  status = 404;
  CHECK_THROWS_AS(fetch(), http_error);
  CHECK(calls == 1);

  calls = 0;
  status = 0;  // not an http_error: the predicate does not accept it
  CHECK_THROWS_AS(fetch(), invalid_factor);
  CHECK(calls == 1);

  SECTION("a type list | a predicate: either one retries") {
    calls = 0;
    auto both =
        resilient{op, retry{{.handle = failures::exceptions<invalid_factor>() |
                                       failures::exceptions_if([](const http_error& e) { return e.status == 503; }) |
                                       failures::rejections()}}}
            .with_clock(clk);
    CHECK_THROWS_AS(both(), invalid_factor);
    CHECK(calls == 4);
    calls = 0;
    status = 404;
    CHECK_THROWS_AS(both(), http_error);
    CHECK(calls == 1);
  }
  SECTION("a predicate on the exception_ptr sees every exception") {
    calls = 0;
    int asked = 0;
    auto any = resilient{op, retry{{.max_retries = 1,
                                    .handle = failures::exceptions_if([&](const std::exception_ptr& e) {
                                                ++asked;
                                                return e != nullptr;
                                              }) |
                                              failures::rejections()}}}
                   .with_clock(clk);
    CHECK_THROWS_AS(any(), invalid_factor);
    CHECK(calls == 2);
    CHECK(asked == 1);
  }
}

TEST_CASE("a results() predicate retries a value that says 503", "[retry]") {
  manual_clock clk{manual_clock::auto_advance};
  std::vector<int> statuses{503, 503, 200};
  std::size_t calls = 0;
  auto get = [&] { return http_response{statuses[std::min(calls++, statuses.size() - 1)], "body"}; };
  delay_log log;
  // [retry-on-result]
  retry r{{.handle = failures::any() | failures::results([](const http_response& resp) { return resp.status == 503; }),
           .on_retry = log}};
  // [retry-on-result]
  auto fetch = resilient{get, r}.with_clock(clk);
  const auto start = clk.now();
  CHECK(fetch().status == 200);
  CHECK(calls == 3);
  CHECK(clk.now() - start == 3s);

  SECTION("when attempts run out the last result is returned as it is") {
    statuses = {503};
    calls = 0;
    auto out = fetch.try_call();
    REQUIRE(out.has_value());
    CHECK(out->status == 503);
    CHECK(calls == 4);
  }
}

TEST_CASE("a results() predicate of the wrong type is a clear error and runs nothing", "[retry]") {
  manual_clock clk{manual_clock::auto_advance};
  int calls = 0;
  retry r{
      {.handle = failures::any() | failures::results([](const http_response& resp) { return resp.status == 503; })}};
  auto wrong = resilient{[&] { return ++calls; }, r}.with_clock(clk);
  CHECK(invalid_argument_of([&] { wrong(); }) ==
        "retry: handle's results() takes '(anonymous namespace)::http_response' but the call returns 'int'");
  auto wrong_void = resilient{[&] { ++calls; }, r}.with_clock(clk);
  CHECK(invalid_argument_of([&] { wrong_void(); }) ==
        "retry: handle's results() takes '(anonymous namespace)::http_response' but the call returns 'void'");
  CHECK(calls == 0);
  // next_delay says the same.
  retry::state s;
  call_context ctx{clk};
  CHECK_THROWS_AS(r.next_delay(ctx, outcome<int>{1}, s), std::invalid_argument);
}

TEST_CASE("inner rejections retry by kind; an open circuit is waited out", "[retry]") {
  manual_clock clk{manual_clock::auto_advance};
  const rejection open{.kind = &circuit_open_kind, .retry_after = 30s, .source = "factor_api"};
  delay_log log;

  SECTION("retried, waiting at least retry_after") {
    auto fetch = resilient{flaky{0}, retry{{.on_retry = log}}, reject_first{2, open}}.with_clock(clk);
    const auto start = clk.now();
    CHECK(fetch() == 42);
    CHECK(*log.delays == seconds_list({30, 30}));
    CHECK(clk.now() - start == 60s);
  }
  SECTION("kinds outside handle are returned at once") {
    // [retry-rejections]
    retry r{{.handle = failures::exceptions() | failures::rejections({rate_limited_kind, bulkhead_full_kind})}};
    // [retry-rejections]
    auto fetch = resilient{flaky{0}, r, reject_first{2, open}}.with_clock(clk);
    auto out = fetch.try_call();
    REQUIRE(out.has_rejection());
    CHECK(out.rejection().is(circuit_open_kind));
    CHECK(out.rejection().source == "factor_api");
    CHECK_THROWS_AS(fetch(), circuit_open_error);
  }
  SECTION("exceptions() alone retries no rejection") {
    reject_first inner{1, rejection{.kind = &timeout_kind, .value = 5s}};
    auto fetch = resilient{flaky{0}, retry{{.handle = failures::exceptions()}}, inner}.with_clock(clk);
    CHECK(fetch.try_call().has_rejection());
    CHECK(*inner.calls == 1);
  }
  SECTION("a rejection without retry_after uses the backoff") {
    auto fetch = resilient{flaky{0}, retry{{.on_retry = log}}, reject_first{2, rejection{.kind = &bulkhead_full_kind}}}
                     .with_clock(clk);
    CHECK(fetch() == 42);
    CHECK(*log.delays == seconds_list({1, 2}));
  }
}

TEST_CASE("a Retry-After hint on a user exception is a floor on the delay", "[retry]") {
  manual_clock clk{manual_clock::auto_advance};
  delay_log log;
  std::vector<duration> waits{10s, 500ms, 20min};
  std::size_t calls = 0;
  auto op = [&]() -> int {
    if (calls < waits.size()) throw too_many_requests{waits[calls++]};
    return 7;
  };
  auto fetch = resilient{op, retry{{.max_delay = 1min, .on_retry = log}}}.with_clock(clk);
  const auto start = clk.now();
  CHECK(fetch() == 7);
  // 10 s beats the backoff's 1 s; the backoff's 2 s beats 500 ms; 20 min beats the 1 min cap.
  CHECK(*log.delays == std::vector<duration>{10s, 2s, 20min});
  CHECK(clk.now() - start == 10s + 2s + 20min);
}

TEST_CASE("retry never sleeps past the deadline and gives up early", "[retry]") {
  manual_clock clk{manual_clock::auto_advance};
  flaky op{100};
  delay_log log;
  auto fetch = resilient{op, retry{{.max_retries = 5, .on_retry = log}}}.with_clock(clk);

  SECTION("the next 4 s wait would cross a 5 s deadline") {
    const auto start = clk.now();
    // [retry-deadline]
    auto out = fetch.try_call_with({.deadline = clk.now() + 5s});  // waits 1 s and 2 s; 4 s more would pass 5 s
    // [retry-deadline]
    REQUIRE(out.has_exception());
    CHECK(*op.calls == 3);
    CHECK(*log.delays == seconds_list({1, 2}));
    CHECK(clk.now() - start == 3s);  // gave up at once instead of sleeping to the deadline
    try {
      std::rethrow_exception(out.exception());
    } catch (const service_error& e) {
      CHECK(e.attempt == 3);  // the last failure
    }
  }
  SECTION("a wait that would end exactly at the deadline is not taken") {
    const auto start = clk.now();
    CHECK(fetch.try_call_with({.deadline = start + 7s}).has_exception());
    CHECK(*op.calls == 3);
    CHECK(clk.now() - start == 3s);
  }
  SECTION("one nanosecond more and it is") {
    const auto start = clk.now();
    CHECK(fetch.try_call_with({.deadline = start + 7s + 1ns}).has_exception());
    CHECK(*op.calls == 4);
    CHECK(clk.now() - start == 7s);
  }
  SECTION("attempts that take time count against the deadline") {
    int calls = 0;
    auto slow = resilient{
        [&]() -> int {
          ++calls;
          clk.advance(2s);
          throw service_error{calls};
        },
        retry{}}.with_clock(clk);
    const auto start = clk.now();
    // t=2 fails, wait 1 -> t=3, t=5 fails, wait 2 would reach the deadline at 7 -> give up.
    CHECK_THROWS_AS(slow.call_with({.deadline = start + 7s}), service_error);
    CHECK(calls == 2);
    CHECK(clk.now() - start == 5s);
  }
  SECTION("a deadline already passed: no retry") {
    const auto start = clk.now();
    clk.advance(1s);
    CHECK(fetch.try_call_with({.deadline = start}).has_exception());
    CHECK(*op.calls == 1);
  }
  SECTION("a Retry-After beyond the deadline gives up too") {
    auto hinted = resilient{[]() -> int { throw too_many_requests{1h}; }, retry{}}.with_clock(clk);
    const auto start = clk.now();
    CHECK_THROWS_AS(hinted.call_with({.deadline = start + 10min}), too_many_requests);
    CHECK(clk.now() == start);
  }
}

TEST_CASE("a stop request ends the retrying with the last failure", "[retry]") {
  SECTION("stop requested before the call: one attempt, no wait") {
    manual_clock clk{manual_clock::auto_advance};
    flaky op{100};
    std::stop_source stop;
    stop.request_stop();
    auto fetch = resilient{op, retry{}}.with_clock(clk);
    const auto start = clk.now();
    CHECK_THROWS_AS(fetch.call_with({.stop = stop.get_token()}), service_error);
    CHECK(*op.calls == 1);
    CHECK(clk.now() == start);
  }
  SECTION("stop requested during the wait wakes it") {
    manual_clock clk;  // time moves only when this test says so
    flaky op{100};
    std::stop_source stop;
    auto fetch = resilient{op, retry{{.base_delay = 10s}}}.with_clock(clk);
    outcome<int> out{0};
    std::jthread caller{[&] { out = fetch.try_call_with({.stop = stop.get_token()}); }};
    clk.wait_for_sleepers(1);
    stop.request_stop();
    caller.join();
    REQUIRE(out.has_exception());
    CHECK(*op.calls == 1);
    CHECK(clk.sleepers() == 0);
  }
}

TEST_CASE("a stop_token callable sees the call's token on every attempt", "[retry]") {
  manual_clock clk{manual_clock::auto_advance};
  std::stop_source stop;
  int calls = 0;
  auto fetch = resilient{
      [&](std::stop_token token, int x) {
        CHECK(token == stop.get_token());
        if (++calls < 3) throw service_error{calls};
        return x * 2;
      },
      retry{}}.with_clock(clk);
  CHECK(fetch.call_with({.stop = stop.get_token()}, 21) == 42);
  CHECK(calls == 3);
}

TEST_CASE("void and move-only results", "[retry]") {
  manual_clock clk{manual_clock::auto_advance};
  SECTION("void") {
    int calls = 0;
    auto write = resilient{
        [&] {
          if (++calls < 3) throw service_error{calls};
        },
        retry{}}.with_clock(clk);
    write();
    CHECK(calls == 3);
    calls = -10;
    auto out = write.try_call();
    CHECK(out.has_exception());
    CHECK(calls == -6);
  }
  SECTION("move-only") {
    int calls = 0;
    auto make = resilient{
        [&] {
          if (++calls < 2) throw service_error{calls};
          return std::make_unique<int>(42);
        },
        retry{}}.with_clock(clk);
    std::unique_ptr<int> p = make();
    REQUIRE(p);
    CHECK(*p == 42);
  }
  SECTION("arguments are not moved away by the first attempt") {
    int calls = 0;
    auto consume = resilient{
        [&](std::string s) {
          if (++calls < 3) throw service_error{calls};
          return s.size();
        },
        retry{}}.with_clock(clk);
    CHECK(consume(std::string(100, 'x')) == 100);
  }
}

TEST_CASE("events: retry_attempted per wait, retries_exhausted when giving up", "[retry]") {
  manual_clock clk{manual_clock::auto_advance};
  retry r{{.max_retries = 2}};
  std::vector<std::string> seen;
  const auto id = r.events().subscribe([&](const event& e) {
    if (e.is(retry_attempted_event))
      seen.push_back("attempted " + std::to_string(e.get<int>("attempt")) + " " +
                     std::to_string(e.get<duration>("delay") / 1s) + "s " +
                     std::string{e.get<std::string_view>("failure")} + " " + std::string{e.operation()});
    else if (e.is(retries_exhausted_event))
      seen.push_back("exhausted " + std::to_string(e.get<int>("attempts")) + " " +
                     std::string{e.get<std::string_view>("failure")});
  });
  auto fetch = resilient{flaky{100}, r}.with_clock(clk);  // a copy of r shares its hub
  CHECK(fetch.try_call_with({.operation = "factor_lookup"}).has_exception());
  CHECK(seen == std::vector<std::string>{"attempted 1 1s service unavailable (attempt 1) factor_lookup",
                                         "attempted 2 2s service unavailable (attempt 2) factor_lookup",
                                         "exhausted 3 service unavailable (attempt 3)"});
  seen.clear();
  auto other = resilient{[]() -> int { throw invalid_factor{}; }, retry{r.options()}}.with_clock(clk);
  CHECK_THROWS(other());
  CHECK(seen.empty());  // another retry: another hub
  auto same = resilient{[]() -> int { throw invalid_factor{}; }, r}.with_clock(clk);
  r.events().unsubscribe(id);
  CHECK_THROWS(same());
  CHECK(seen.empty());  // unsubscribed

  SECTION("a success emits nothing; a failure that may not retry emits only retries_exhausted") {
    retry picky{{.handle = failures::any().except<invalid_factor>()}};
    picky.events().subscribe([&](const event& e) { seen.push_back(std::string{e.name()}); });
    auto ok = resilient{flaky{0}, picky}.with_clock(clk);
    CHECK(ok() == 42);
    CHECK(seen.empty());
    auto fails_fast = resilient{[]() -> int { throw invalid_factor{}; }, picky}.with_clock(clk);
    CHECK_THROWS(fails_fast());
    CHECK(seen == std::vector<std::string>{"retries_exhausted"});
  }
}

TEST_CASE("on_retry sees the failure; if it throws, the call ends with that", "[retry]") {
  manual_clock clk{manual_clock::auto_advance};
  std::vector<std::string> what;
  int calls = 0;
  // [retry-on-retry]
  retry r{{.on_retry = [&](int attempt, duration delay, const failure& failure) {
    what.push_back(std::to_string(attempt) + ": " + failure.what() + ", next try in " + std::to_string(delay / 1s) +
                   " s");
  }}};
  // [retry-on-retry]
  auto fetch = resilient{[&]() -> int {
                           if (++calls < 3) throw service_error{calls};
                           return 1;
                         },
                         r}
                   .with_clock(clk);
  CHECK(fetch() == 1);
  CHECK(what == std::vector<std::string>{"1: service unavailable (attempt 1), next try in 1 s",
                                         "2: service unavailable (attempt 2), next try in 2 s"});

  calls = 0;
  auto angry = resilient{
      [&]() -> int { throw service_error{++calls}; }, retry{{.on_retry = [](int, duration, const failure&) {
        throw std::logic_error{"listener bug"};
      }}}}.with_clock(clk);
  CHECK_THROWS_AS(angry(), std::logic_error);
  CHECK(calls == 1);

  SECTION("a rejection and a retried result are described too") {
    std::vector<std::string> kinds;
    auto describe_failure = [&](int, duration, const failure& f) {
      kinds.push_back(f.has_rejection() ? "rejection: " + f.what()
                      : f.is_result()   ? "result: " + f.what()
                                        : "exception");
    };
    auto rejected = resilient{flaky{0}, retry{{.max_retries = 1, .on_retry = describe_failure}},
                              reject_first{1, rejection{.kind = &bulkhead_full_kind, .source = "db"}}}
                        .with_clock(clk);
    CHECK(rejected() == 42);
    auto result = resilient{[] { return 5; },
                            retry{{.max_retries = 1,
                                   .handle = failures::any() | failures::results([](const int& v) { return v == 5; }),
                                   .on_retry = describe_failure}}}
                      .with_clock(clk);
    CHECK(result() == 5);
    CHECK(kinds ==
          std::vector<std::string>{"rejection: bulkhead 'db' is full", "result: the result counts as a failure"});
  }
}

TEST_CASE("seeded jitter through the policy stays in bounds and is reproducible", "[retry]") {
  auto run = [](std::uint64_t seed, jitter_mode mode) {
    manual_clock clk{manual_clock::auto_advance};
    delay_log log;
    auto fetch =
        resilient{flaky{100}, retry{{.max_retries = 4, .jitter = mode, .random = seeded_random(seed), .on_retry = log}}}
            .with_clock(clk);
    const auto start = clk.now();
    CHECK(fetch.try_call().has_exception());
    duration total{};
    for (auto d : *log.delays) total += d;
    CHECK(clk.now() - start == total);
    return *log.delays;
  };
  const auto full = run(1, jitter_mode::full);
  const auto equal = run(1, jitter_mode::equal);
  REQUIRE(full.size() == 4);
  REQUIRE(equal.size() == 4);
  for (int i = 0; i < 4; ++i) {
    const duration nominal = std::chrono::seconds{1 << i};
    CHECK(full[i] < nominal);
    CHECK(equal[i] >= nominal / 2);
    CHECK(equal[i] < nominal);
  }
  CHECK(run(1, jitter_mode::full) == full);
  CHECK(run(2, jitter_mode::full) != full);
}

TEST_CASE("next_delay drives a retry loop step by step", "[retry]") {
  manual_clock clk;
  call_context ctx{clk};
  retry r{{.max_retries = 2}};
  retry::state s;
  const outcome<int> failed{std::make_exception_ptr(service_error{1})};
  CHECK(r.next_delay(ctx, outcome<int>{1}, s) == std::nullopt);
  CHECK(s.attempt == 1);
  CHECK(r.next_delay(ctx, failed, s) == duration{1s});
  CHECK(s.attempt == 2);
  CHECK(s.previous_delay == 1s);
  CHECK(r.next_delay(ctx, failed, s) == duration{2s});
  CHECK(s.attempt == 3);
  CHECK(r.next_delay(ctx, failed, s) == std::nullopt);  // attempts ran out
  CHECK(s.attempt == 3);

  retry::state fresh;
  std::stop_source stop;
  ctx.stop = stop.get_token();
  stop.request_stop();
  CHECK(r.next_delay(ctx, failed, fresh) == std::nullopt);
  CHECK(clk.now() == call_context{clk}.now());  // next_delay never sleeps
}

TEST_CASE("max_retries = INT_MAX stops at the last int attempt number instead of overflowing", "[retry]") {
  manual_clock clk;
  call_context ctx{clk};
  const retry r{{.max_retries = INT_MAX, .max_delay = 1h}};
  const outcome<int> failed{std::make_exception_ptr(service_error{1})};
  // A loop that has failed INT_MAX - 3 times already (2^31 real attempts would take minutes).
  retry::state s{.attempt = INT_MAX - 2, .previous_delay = 1h};
  CHECK(r.next_delay(ctx, failed, s) == duration{1h});  // backoff saturated at max_delay
  CHECK(s.attempt == INT_MAX - 1);
  CHECK(r.next_delay(ctx, failed, s) == duration{1h});
  CHECK(s.attempt == INT_MAX);
  // Attempt INT_MAX is the last: before, it was retried and the counter wrapped to INT_MIN, never ending.
  CHECK(r.next_delay(ctx, failed, s) == std::nullopt);
  CHECK(s.attempt == INT_MAX);
  CHECK(r.next_delay(ctx, outcome<int>{7}, s) == std::nullopt);  // a success still just ends it
}

TEST_CASE("bad retry options throw std::invalid_argument naming the field", "[retry]") {
  CHECK(invalid_argument_of([] { retry{{.max_retries = -1}}; }) == "retry: max_retries must be >= 0");
  CHECK(invalid_argument_of([] { retry{{.base_delay = -1ms}}; }) == "retry: base_delay must be >= 0");
  CHECK(invalid_argument_of([] { retry{{.max_delay = -1s}}; }) == "retry: max_delay must be >= 0");
  CHECK(invalid_argument_of([] { retry{{.base_delay = 10s, .max_delay = 5s}}; }) ==
        "retry: max_delay must be >= base_delay");
  CHECK(invalid_argument_of([] { retry{{.multiplier = 0.9}}; }) == "retry: multiplier must be finite and >= 1");
  CHECK(invalid_argument_of([] { retry{{.multiplier = std::numeric_limits<double>::quiet_NaN()}}; }) ==
        "retry: multiplier must be finite and >= 1");
  CHECK(invalid_argument_of([] { retry{{.multiplier = -std::numeric_limits<double>::infinity()}}; }) ==
        "retry: multiplier must be finite and >= 1");
  CHECK(invalid_argument_of([] { retry{{.strategy = static_cast<backoff_strategy>(200)}}; }) ==
        "retry: strategy is not a backoff_strategy");
  CHECK(invalid_argument_of([] { retry{{.base_delay = duration::max(), .max_delay = duration::max()}}; }) ==
        "retry: base_delay must be within 100 years (resilience::max_duration)");
  CHECK(invalid_argument_of([] { retry{{.base_delay = max_duration, .max_delay = duration::max()}}; }) == "no error");
  CHECK(invalid_argument_of([] { retry{{.max_retries = 0, .base_delay = 0s}}; }) == "no error");
  CHECK(invalid_argument_of([] { retry{{.max_retries = INT_MAX}}; }) == "no error");
}

namespace {
using sys = std::chrono::system_clock;
// Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example date.
const sys::time_point rfc_example = std::chrono::sys_days{std::chrono::year{1994} / 11 / 6} + 8h + 49min + 37s;
}  // namespace

TEST_CASE("a parsed Retry-After feeds the retry through retry_after_hint", "[retry]") {
  manual_clock clk{manual_clock::auto_advance};
  struct throttled : std::runtime_error, retry_after_hint {
    explicit throttled(std::optional<duration> w) : std::runtime_error{"HTTP 503"}, wait{w} {}
    std::optional<duration> retry_after() const noexcept override { return wait; }
    std::optional<duration> wait;
  };
  int calls = 0;
  auto fetch = resilient{
      [&]() -> int {
        if (++calls == 1) throw throttled{parse_retry_after("45", rfc_example)};
        if (calls == 2) throw throttled{parse_retry_after("soon", rfc_example)};  // no hint
        return 3;
      },
      retry{}}.with_clock(clk);
  const auto start = clk.now();
  CHECK(fetch() == 3);
  CHECK(clk.now() - start == 45s + 2s);
}

TEST_CASE("jittered strategies through the policy: bounds of every wait", "[retry]") {
  manual_clock clk{manual_clock::auto_advance};
  delay_log log;
  SECTION("full jitter, capped") {
    // [retry-jitter]
    retry r{{.max_retries = 6,
             .base_delay = 500ms,
             .max_delay = 4s,
             .jitter = jitter_mode::full,
             .random = seeded_random(42)}};
    // [retry-jitter]
    auto fetch = resilient{
        flaky{100}, retry{[&] {
          auto o = r.options();
          o.on_retry = log;
          return o;
        }()}}.with_clock(clk);
    CHECK(fetch.try_call().has_exception());
    REQUIRE(log.delays->size() == 6);
    const duration caps[] = {500ms, 1s, 2s, 4s, 4s, 4s};
    for (std::size_t i = 0; i < 6; ++i) {
      CHECK((*log.delays)[i] >= 0s);
      CHECK((*log.delays)[i] < caps[i]);
    }
  }
  SECTION("decorrelated jitter") {
    // [retry-decorrelated]
    retry r{
        {.max_retries = 8, .base_delay = 100ms, .strategy = backoff_strategy::decorrelated_jitter, .max_delay = 10s}};
    // [retry-decorrelated]
    auto fetch = resilient{
        flaky{100}, retry{[&] {
          auto o = r.options();
          o.on_retry = log;
          o.random = seeded_random(7);
          return o;
        }()}}.with_clock(clk);
    const auto start = clk.now();
    CHECK(fetch.try_call().has_exception());
    REQUIRE(log.delays->size() == 8);
    duration previous = 100ms, total{};
    for (auto d : *log.delays) {
      CHECK(d >= 100ms);
      CHECK(d <= std::min<duration>(10s, previous * 3));
      previous = d;
      total += d;
    }
    CHECK(clk.now() - start == total);
  }
}

TEST_CASE("a result type without assignment is retried too", "[retry]") {
  struct frozen {
    const int value;
  };
  STATIC_REQUIRE_FALSE(std::is_move_assignable_v<outcome<frozen>>);
  manual_clock clk{manual_clock::auto_advance};
  int calls = 0;
  auto make = resilient{
      [&] {
        if (++calls < 3) throw service_error{calls};
        return frozen{calls};
      },
      retry{}}.with_clock(clk);
  CHECK(make().value == 3);
}

namespace {
// Breaks the policy contract (outcomes, not exceptions) on its second call.
struct throws_on_second {
  std::shared_ptr<int> calls = std::make_shared<int>(0);
  template <class Next>
  auto execute(call_context& ctx, Next&& next) const {
    if (++*calls == 2) throw std::logic_error{"broken policy"};
    return next(ctx);
  }
};
}  // namespace

TEST_CASE(
    "an inner policy that throws fails that attempt with its exception, which retry judges like the callable's own",
    "[retry]") {
  // The pipeline turns what a policy throws into its outcome (issue #11,
  // item 1), so retry's predicates decide, as for any exception.
  manual_clock clk{manual_clock::auto_advance};
  throws_on_second inner;
  auto fetch =
      resilient{flaky{100}, retry{{.handle = failures::any().except<std::logic_error>()}}, inner}.with_clock(clk);
  auto out = fetch.try_call();
  REQUIRE(out.has_exception());
  CHECK(out.what() == "broken policy");
  CHECK(*inner.calls == 2);

  throws_on_second retried;
  auto again = resilient{flaky{100}, retry{}, retried}.with_clock(clk);
  out = again.try_call();
  REQUIRE(out.has_exception());
  CHECK(out.what() == "service unavailable (attempt 3)");  // attempts 1, 3 and 4 reached the callable
  CHECK(*retried.calls == 4);
}
