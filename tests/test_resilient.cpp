#include <resilience/bulkhead.hpp>
#include <resilience/executor.hpp>
#include <resilience/rate_limit.hpp>
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>
#include <resilience/timeout.hpp>

#include <catch2/catch.hpp>

#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "support/clocks.hpp"
#include "support/executors.hpp"
#include "support/messages.hpp"

using namespace resilience;
using namespace support;
using namespace std::chrono_literals;

namespace {

// Runs the rest of the pipeline `times` times and returns the last outcome,
// the way a retry does.
struct repeat {
  int times;
  template <class Next>
  auto execute(call_context& ctx, Next&& next) const {
    auto o = next(ctx);
    for (int i = 1; i < times; ++i) {
      ++ctx.attempt;
      o = next(ctx);
    }
    return o;
  }
};

// Records what the context says.
struct spy {
  std::shared_ptr<std::vector<std::string>> seen = std::make_shared<std::vector<std::string>>();
  template <class Next>
  auto execute(call_context& ctx, Next&& next) const {
    seen->push_back(std::string{ctx.operation} + "/" + std::string{ctx.tenant} + "/" + std::to_string(ctx.attempt));
    return next(ctx);
  }
};

// Rejects every call without running it.
struct always_reject {
  std::string name = "gate";
  template <class Next>
  auto execute(call_context& ctx, Next&& next) const -> std::invoke_result_t<Next&, call_context&> {
    (void)ctx;
    (void)next;
    return rejection{.kind = &bulkhead_full_kind, .source = name};
  }
};

struct tag {
  int id;
  std::shared_ptr<std::vector<int>> order;
  template <class Next>
  auto execute(call_context& ctx, Next&& next) const {
    order->push_back(id);
    auto o = next(ctx);
    order->push_back(-id);
    return o;
  }
};

struct read_clock {
  std::shared_ptr<time_point> at = std::make_shared<time_point>();
  template <class Next>
  auto execute(call_context& ctx, Next&& next) const {
    *at = ctx.now();
    return next(ctx);
  }
};

struct user_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace

TEST_CASE("a wrapper with no policies is the plain call", "[resilient]") {
  resilient twice{[](int x) { return 2 * x; }};
  CHECK(twice(21) == 42);
  CHECK(twice.try_call(4).value() == 8);
  // The user's exception passes straight through operator().
  resilient thrower{[](int) -> int { throw user_error{"bad factor"}; }};
  CHECK_THROWS_AS(thrower(1), user_error);
  CHECK(thrower.try_call(1).has_exception());
}

TEST_CASE("try_call never throws: user exceptions and rejections become outcomes", "[resilient]") {
  resilient failing{[]() -> double { throw user_error{"503"}; }, spy{}};
  auto o = failing.try_call();
  REQUIRE(o.has_exception());
  CHECK(o.what() == "503");
  STATIC_REQUIRE(noexcept(failing.try_call()));

  resilient gated{[] { return 1.0; }, always_reject{}};
  auto r = gated.try_call();
  REQUIRE(r.has_rejection());
  CHECK(r.rejection().is(bulkhead_full_kind));
  CHECK(r.rejection().source == "gate");
  CHECK_THROWS_AS(gated(), bulkhead_full_error);
}

TEST_CASE("operator() rethrows the user's exception object itself", "[resilient]") {
  const void* thrown = nullptr;
  resilient f{[&]() -> int {
                try {
                  throw user_error{"factor API down"};
                } catch (const user_error& e) {
                  thrown = &e;  // the object in flight; `throw;` sends this very object on
                  throw;
                }
              },
              spy{}};
  try {
    f();
    FAIL("expected an exception");
  } catch (const user_error& caught) {
    CHECK(&caught == thrown);
  }

  resilient g{[]() -> int { throw user_error{"x"}; }, spy{}};
  auto o = g.try_call();
  const std::exception_ptr first = o.exception();
  try {
    std::move(o).value();
    FAIL("expected an exception");
  } catch (...) {
    CHECK(std::current_exception() == first);
  }
}

TEST_CASE("arguments are bound once and survive every attempt", "[resilient]") {
  std::vector<std::string> received;
  resilient f{[&](std::string s) {
                received.push_back(s);
                return s.size();
              },
              repeat{3}};
  CHECK(f(std::string{"electricity"}) == 11);
  CHECK(received == std::vector<std::string>{"electricity", "electricity", "electricity"});

  // A move-only argument is passed by reference to the callable on each attempt.
  int calls = 0;
  resilient g{[&](const std::unique_ptr<int>& p) {
                ++calls;
                return *p;
              },
              repeat{2}};
  CHECK(g(std::make_unique<int>(7)) == 7);
  CHECK(calls == 2);
}

TEST_CASE("void and move-only results", "[resilient]") {
  int n = 0;
  resilient v{[&] { ++n; }, repeat{2}};
  v();
  CHECK(n == 2);
  auto ov = v.try_call();
  CHECK(ov.has_value());

  resilient m{[] { return std::make_unique<int>(5); }, repeat{2}};
  std::unique_ptr<int> p = m();
  CHECK(*p == 5);
  auto om = m.try_call();
  REQUIRE(om);
  CHECK(**om == 5);
}

TEST_CASE("a callable may take the call's stop_token first", "[resilient]") {
  std::stop_source source;
  resilient f{[](std::stop_token st, int x) { return st.stop_requested() ? -x : x; }, spy{}};
  CHECK(f(3) == 3);
  source.request_stop();
  CHECK(f.call_with({.stop = source.get_token()}, 3) == -3);
  resilient bare{[](std::stop_token st) { return st.stop_possible(); }};
  CHECK_FALSE(bare());
}

TEST_CASE("call options reach the policies through the context", "[resilient]") {
  spy s;
  resilient f{[](int x) { return x; }, s, repeat{2}, s};
  CHECK(f.call_with({.operation = "factor_lookup", .tenant = "acme"}, 1) == 1);
  CHECK(*s.seen == std::vector<std::string>{"factor_lookup/acme/1", "factor_lookup/acme/1", "factor_lookup/acme/2"});
}

TEST_CASE("policies run outermost first", "[resilient]") {
  auto order = std::make_shared<std::vector<int>>();
  resilient f{[&] { order->push_back(0); }, tag{1, order}, tag{2, order}};
  f();
  CHECK(*order == std::vector<int>{1, 2, 0, -2, -1});
}

TEST_CASE("the wrapper's clock is the context's clock", "[resilient]") {
  manual_clock clk;
  read_clock probe;
  auto f = resilient{[] { return 1; }, probe}.with_clock(clk);
  clk.advance(90s);
  f();
  CHECK(*probe.at == clk.now());
}

TEST_CASE("a pipeline runs any callable, or wraps one", "[resilient]") {
  spy s;
  pipeline p{s, repeat{2}};
  CHECK(p.execute([](int a, int b) { return a + b; }, 2, 3) == 5);
  auto o = p.try_execute([]() -> int { throw user_error{"no"}; });
  CHECK(o.has_exception());
  auto wrapped = p.wrap([](int x) { return x * 10; });
  CHECK(wrapped(4) == 40);
  CHECK(s.seen->size() == 3);
}

TEST_CASE("deadline helpers on the context", "[resilient][context]") {
  manual_clock clk;
  clock_ref ref = clk;
  call_context ctx{ref};
  CHECK(ctx.remaining() == duration::max());
  ctx.narrow_deadline(clk.now() + 10s);
  ctx.narrow_deadline(clk.now() + 20s);  // never loosens
  CHECK(ctx.remaining() == 10s);
  clk.advance(4s);
  CHECK(ctx.remaining() == 6s);
}

namespace {

// A policy whose own code throws (a user hook it runs, say).
struct throwing_policy {
  template <class Next>
  auto execute(call_context&, Next&&) const -> decltype(std::declval<Next&>()(std::declval<call_context&>())) {
    throw std::out_of_range{"hook"};
  }
};

}  // namespace

TEST_CASE("what a policy's own code throws becomes the call's failure; try_call never terminates",
          "[resilient][hooks]") {
  resilient r{[] { return 1; }, throwing_policy{}};
  const auto o = r.try_call();
  REQUIRE(o.has_exception());
  CHECK(failure_text(o) == "hook");
  CHECK_THROWS_AS(r(), std::out_of_range);
  pipeline p{repeat{2}, throwing_policy{}};
  CHECK(p.try_execute([] { return 2; }).has_exception());
}

TEST_CASE("an executor whose post throws fails a detached timeout's call, and an async call", "[resilient][hooks]") {
  resilient r{[] { return 1; }, timeout{5s, timeout_mode::detached}};
  r.with_executor(executor_ref::adapt(refusing_executor{}));
  CHECK(failure_text(r.try_call()) == "executor full");

  resilient a{[] { return 1; }, retry{}};
  a.with_executor(executor_ref::adapt(refusing_executor{}));
  auto f = a.async();
  REQUIRE(f.wait_for(0s) == std::future_status::ready);
  CHECK_THROWS_WITH(f.get(), "executor full");
}

TEST_CASE("a clock that throws in a waiting rate limit fails the call and gives the booked permit back",
          "[resilient][hooks]") {
  auto clk = std::make_shared<throwing_sleep_clock>();
  limiter one{{.requests_per_second = 1, .burst_size = 1}, clock_ref{clk}, "erp"};
  REQUIRE(one.try_acquire());
  resilient r{[] { return 1; }, rate_limit{one, {.max_wait = 2s}}};
  const auto o = r.try_call();
  REQUIRE(o.has_exception());
  CHECK_THROWS_AS(o.throw_if_failed(), std::system_error);
  clk->time.advance(1s);
  CHECK(one.try_acquire());  // the permit booked for the failed wait was refunded
}

TEST_CASE("a clock that throws in a waiting bulkhead fails the call and leaves no waiter behind",
          "[resilient][hooks]") {
  auto clk = std::make_shared<throwing_sleep_clock>();
  bulkhead pool{{.name = "erp_pool", .clock = clock_ref{clk}, .max_concurrent_calls = 1, .max_wait = 2s}};
  auto held = pool.try_acquire();
  REQUIRE(held);
  resilient r{[] { return 1; }, pool};
  const auto o = r.try_call();
  REQUIRE(o.has_exception());  // the clock's own exception, not a bulkhead_full rejection
  CHECK_THROWS_AS(o.throw_if_failed(), std::system_error);
  CHECK(pool.stats().waiting == 0);
  CHECK(pool.stats().in_flight == 1);
  held.release();
  CHECK(r.try_call().has_value());
}

TEST_CASE("time reaches stateful policies through the pipeline's one clock", "[resilient][clock]") {
  manual_clock clk;
  bulkhead real_time{{.name = "erp_pool", .max_concurrent_calls = 1, .max_wait = 1s}};
  // A policy on another clock than with_clock's is an error, naming the policy.
  resilient r{[] { return 1; }, retry{}, real_time};
  CHECK_THROWS_MATCHES(
      r.with_clock(clk), std::invalid_argument,
      Catch::Matchers::Message("with_clock: policy 2 (bulkhead 'erp_pool') reads another clock than this pipeline; "
                               "build it on the pipeline's clock (its options' clock)"));
  CHECK(r.policies().clock().is_steady());  // unchanged

  // Built on the manual clock, the pipeline adopts it.
  bulkhead virtual_time{{.clock = clk, .max_concurrent_calls = 1, .max_wait = 1s}};
  resilient v{[] { return 1; }, virtual_time};
  CHECK(v.policies().clock() == clock_ref{clk});
  CHECK_NOTHROW(v.with_clock(clk));
  // Two policies on two clocks cannot share a pipeline.
  CHECK_THROWS_AS((resilient{[] { return 1; }, virtual_time, real_time}), std::invalid_argument);
  // coarse_clock() and the steady clock are one time line.
  limiter coarse{{}, coarse_clock(), "coarse"};
  CHECK_NOTHROW(resilient{[] { return 1; }, rate_limit{coarse}}.with_clock(steady_clock{}));
}
