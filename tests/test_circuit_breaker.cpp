#include <resilience/bulkhead.hpp>
#include <resilience/circuit_breaker.hpp>
#include <resilience/rate_limit.hpp>
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>
#include <resilience/timeout.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace resilience;
using namespace std::chrono_literals;

#include "support/clocks.hpp"
#include "support/sanitizers.hpp"
#include "support/spin.hpp"

using namespace support;
#ifdef RESILIENCE_TEST_TSAN
constexpr int stress_calls = 10'000;  // TSan is ~20x slower; the interleavings are what matter
#else
constexpr int stress_calls = 100'000;
#endif

namespace {

struct service_down : std::runtime_error {
  service_down() : std::runtime_error{"factor service down"} {}
};
struct not_found : std::runtime_error {
  not_found() : std::runtime_error{"no factor for this activity"} {}
};

// A scripted dependency: fail() throws, ok() returns 42.
int ok() { return 42; }
int fail() { throw service_down{}; }

void fail_n(const circuit_breaker& cb, int n) {
  for (int i = 0; i < n; ++i) (void)cb.try_call(fail);
}

// Every transition a breaker announced, in order.
struct transition_log {
  explicit transition_log(const circuit_breaker& cb) {
    cb.on_state_change([this](circuit_state from, circuit_state to) {
      std::lock_guard lock{mutex};
      seen.emplace_back(from, to);
    });
  }
  std::vector<std::pair<circuit_state, circuit_state>> get() const {
    std::lock_guard lock{mutex};
    return seen;
  }
  mutable std::mutex mutex;
  std::vector<std::pair<circuit_state, circuit_state>> seen;
};

// A policy standing for an inner one that refuses every call.
struct reject_with {
  const rejection_kind& kind;
  template <class Next>
  auto execute(call_context&, Next&&) const {
    return outcome<int>{rejection{.kind = &kind}};
  }
};

constexpr auto closed = circuit_state::closed;
constexpr auto open = circuit_state::open;
constexpr auto half_open = circuit_state::half_open;

}  // namespace

TEST_CASE("seed scenario: 5 failures open it, 60 s later a successful trial closes it", "[circuit_breaker]") {
  manual_clock clk;
  circuit_breaker cb{{.name = "factor_api", .clock = clk}};
  transition_log log{cb};
  CHECK(cb.options().fail_max == 5);
  CHECK(cb.options().break_duration == 60s);

  fail_n(cb, 4);
  CHECK(cb.state() == closed);
  CHECK(cb.stats().consecutive_failures == 4);
  fail_n(cb, 1);
  CHECK(cb.state() == open);

  // Open: the call is refused without running, naming the breaker and the wait.
  int runs = 0;
  auto counted = [&] { return ++runs; };
  try {
    cb.call(counted);
    FAIL("an open breaker let a call through");
  } catch (const circuit_open_error& e) {
    CHECK(e.name() == "factor_api");
    CHECK(e.retry_after() == 60s);
  }
  clk.advance(59s);
  CHECK(cb.state() == open);
  CHECK(cb.try_call(counted).rejection().retry_after == 1s);
  CHECK(runs == 0);

  clk.advance(1s);
  CHECK(cb.state() == half_open);
  CHECK(cb.call(counted) == 1);
  CHECK(cb.state() == closed);
  CHECK(log.get() ==
        std::vector<std::pair<circuit_state, circuit_state>>{{closed, open}, {open, half_open}, {half_open, closed}});

  const auto s = cb.stats();
  CHECK(s.failed == 5);
  CHECK(s.successful == 1);
  CHECK(s.rejected == 2);
  CHECK(s.transitions[0][1] == 1);
  CHECK(s.transitions[1][2] == 1);
  CHECK(s.transitions[2][0] == 1);
  CHECK(s.transition_count() == 3);
}

TEST_CASE("a success resets the consecutive count; a failed trial reopens", "[circuit_breaker]") {
  manual_clock clk;
  circuit_breaker cb{{.clock = clk, .fail_max = 3, .break_duration = 10s}};
  fail_n(cb, 2);
  CHECK(cb.try_call(ok).value() == 42);
  fail_n(cb, 2);
  CHECK(cb.state() == closed);
  fail_n(cb, 1);
  CHECK(cb.state() == open);

  clk.advance(10s);
  CHECK(cb.try_call(fail).has_exception());  // the trial ran and failed
  CHECK(cb.state() == open);
  CHECK(cb.try_call(ok).rejection().retry_after == 10s);
  CHECK(cb.stats().transitions[2][1] == 1);
}

TEST_CASE("a rejection through try_call is a value naming the breaker's own storage", "[circuit_breaker]") {
  manual_clock clk;
  circuit_breaker cb{{.name = "erp", .clock = clk, .fail_max = 1}};
  resilient fetch{ok, cb};
  fail_n(cb, 1);
  const auto r = fetch.try_call();
  REQUIRE(r.has_rejection());
  CHECK(r.rejection().is(circuit_open_kind));
  CHECK(r.rejection().source.data() == cb.name().data());
  CHECK(r.rejection().retry_after == 60s);
  CHECK_THROWS_AS(fetch(), circuit_open_error);
}

TEST_CASE("the caller's exception passes through unchanged", "[circuit_breaker]") {
  circuit_breaker cb;
  const auto original = std::make_exception_ptr(service_down{});
  auto rethrow = [&]() -> int { std::rethrow_exception(original); };
  try {
    cb.call(rethrow);
    FAIL("no exception");
  } catch (const service_down& e) {
    try {
      std::rethrow_exception(original);
    } catch (const service_down& o) {
      CHECK(&e == &o);
    }
  }
  resilient wrapped{rethrow, cb};
  const auto r = wrapped.try_call();
  REQUIRE(r.has_exception());
  CHECK(r.exception() == original);
  CHECK(cb.stats().failed == 2);
}

TEST_CASE("count-based window slides over the last N calls", "[circuit_breaker]") {
  manual_clock clk;
  circuit_breaker cb{{.clock = clk,
                      .window = breaker_window::count_based,
                      .window_size = 4,
                      .minimum_calls = 4,
                      .failure_rate_threshold = 0.75}};
  fail_n(cb, 2);
  for (int i = 0; i < 4; ++i) (void)cb.try_call(ok);  // the two failures slide out
  CHECK(cb.stats().failure_rate == 0.0);
  CHECK(cb.stats().window_calls == 4);
  fail_n(cb, 2);  // S S F F: 50 %
  CHECK(cb.state() == closed);
  CHECK(cb.stats().failure_rate == 0.5);
  fail_n(cb, 1);  // S F F F: 75 %
  CHECK(cb.state() == open);
  CHECK(cb.stats().successful == 4);
  CHECK(cb.stats().failed == 5);
}

TEST_CASE("count-based window: a success replacing a success keeps the totals", "[circuit_breaker]") {
  manual_clock clk;
  circuit_breaker cb{{.clock = clk,
                      .window = breaker_window::count_based,
                      .window_size = 2,
                      .minimum_calls = 2,
                      .failure_rate_threshold = 1.0}};
  for (int i = 0; i < 5; ++i) (void)cb.try_call(ok);  // S S, then S over S
  CHECK(cb.stats().window_calls == 2);
  CHECK(cb.stats().failure_rate == 0.0);
  fail_n(cb, 1);  // S F
  CHECK(cb.state() == closed);
  CHECK(cb.stats().failure_rate == 0.5);
  fail_n(cb, 1);  // F F
  CHECK(cb.state() == open);
}

TEST_CASE("count-based window: a failure replacing a failure is evaluated, not counted twice", "[circuit_breaker]") {
  manual_clock clk;
  circuit_breaker cb{{.clock = clk,
                      .window = breaker_window::count_based,
                      .window_size = 2,
                      .minimum_calls = 2,
                      .failure_rate_threshold = 1.0}};
  fail_n(cb, 1);          // F _
  (void)cb.try_call(ok);  // F S
  fail_n(cb, 1);          // F over F: F S
  CHECK(cb.state() == closed);
  CHECK(cb.stats().failure_rate == 0.5);
  CHECK(cb.stats().window_calls == 2);
  fail_n(cb, 1);  // F F
  CHECK(cb.state() == open);
}

TEST_CASE("rate modes wait for minimum_calls", "[circuit_breaker]") {
  manual_clock clk;
  SECTION("count-based") {
    circuit_breaker cb{{.clock = clk, .window = breaker_window::count_based, .window_size = 10, .minimum_calls = 5}};
    fail_n(cb, 4);
    CHECK(cb.state() == closed);
    CHECK(cb.stats().failure_rate == 1.0);
    fail_n(cb, 1);
    CHECK(cb.state() == open);
  }
  SECTION("time-based") {
    circuit_breaker cb{
        {.clock = clk, .window = breaker_window::time_based, .window_duration = 10s, .minimum_calls = 5}};
    fail_n(cb, 4);
    CHECK(cb.state() == closed);
    fail_n(cb, 1);
    CHECK(cb.state() == open);
  }
}

TEST_CASE("time-based window slides bucket by bucket", "[circuit_breaker]") {
  manual_clock clk;  // starts at 1 h: a bucket boundary
  circuit_breaker cb{{.clock = clk,
                      .window = breaker_window::time_based,
                      .window_duration = 10s,
                      .window_buckets = 10,
                      .minimum_calls = 4,
                      .failure_rate_threshold = 0.5}};
  fail_n(cb, 3);  // bucket [0 s, 1 s)
  clk.advance(500ms);
  (void)cb.try_call(ok);
  CHECK(cb.stats().window_calls == 4);
  CHECK(cb.stats().failure_rate == 0.75);  // success records do not re-evaluate; a failure would open it

  clk.advance(9s + 499ms);  // 9.999 s: still inside the first bucket's window
  CHECK(cb.stats().window_calls == 4);
  clk.advance(1ms);  // 10 s: the first bucket slid out
  CHECK(cb.stats().window_calls == 0);

  (void)cb.try_call(ok);
  (void)cb.try_call(ok);
  fail_n(cb, 1);
  CHECK(cb.state() == closed);  // 3 calls < minimum
  clk.advance(1s);
  fail_n(cb, 1);  // next bucket: F + S S F = 2/4
  CHECK(cb.stats().window_calls == 4);
  CHECK(cb.state() == open);
}

TEST_CASE("time-based window forgets a burst that is older than the window", "[circuit_breaker]") {
  manual_clock clk;
  circuit_breaker cb{{.clock = clk,
                      .window = breaker_window::time_based,
                      .window_duration = 4s,
                      .window_buckets = 4,
                      .minimum_calls = 2}};
  (void)cb.try_call(ok);
  (void)cb.try_call(ok);
  (void)cb.try_call(ok);
  clk.advance(3s);
  fail_n(cb, 2);  // 2 of 5: 40 %
  CHECK(cb.state() == closed);
  clk.advance(1s);  // the successes are gone; the failures are still there
  CHECK(cb.stats().window_calls == 2);
  fail_n(cb, 1);
  CHECK(cb.state() == open);
}

TEST_CASE("count-based window: a full window of successes, then failures, then a new closed period",
          "[circuit_breaker]") {
  manual_clock clk;
  circuit_breaker cb{{.clock = clk,
                      .window = breaker_window::count_based,
                      .break_duration = 1s,
                      .window_size = 4,
                      .minimum_calls = 4,
                      .failure_rate_threshold = 0.5}};
  for (int i = 0; i < 8; ++i) (void)cb.try_call(ok);  // S S S S, twice over: the window is all successes
  CHECK(cb.stats().window_calls == 4);
  CHECK(cb.stats().failure_rate == 0.0);
  fail_n(cb, 1);  // F S S S
  CHECK(cb.state() == closed);
  CHECK(cb.stats().failure_rate == 0.25);
  (void)cb.try_call(ok);  // F S S S: a success still replaces its slot when the window holds a failure
  (void)cb.try_call(ok);
  (void)cb.try_call(ok);
  (void)cb.try_call(ok);  // S S S S: the failure slid out
  CHECK(cb.stats().failure_rate == 0.0);
  fail_n(cb, 2);  // F F S S
  CHECK(cb.state() == open);

  clk.advance(1s);
  CHECK(cb.call(ok) == 42);  // the trial closes it: a new period, an empty window
  CHECK(cb.state() == closed);
  CHECK(cb.stats().window_calls == 0);
  for (int i = 0; i < 4; ++i) (void)cb.try_call(ok);  // full of this period's successes
  CHECK(cb.stats().window_calls == 4);
  fail_n(cb, 1);  // F S S S
  CHECK(cb.state() == closed);
  fail_n(cb, 1);  // F F S S
  CHECK(cb.state() == open);
  const auto s = cb.stats();
  CHECK(s.successful == 8 + 4 + 1 + 4);
  CHECK(s.failed == 1 + 2 + 2);
}

TEST_CASE("only a rate window with slow_call_duration tracks slow calls", "[circuit_breaker]") {
  CHECK_FALSE(circuit_breaker{}.tracks_slow_calls());
  CHECK_FALSE(circuit_breaker{{.window = breaker_window::count_based}}.tracks_slow_calls());
  CHECK(circuit_breaker{{.window = breaker_window::count_based, .slow_call_duration = 1s}}.tracks_slow_calls());
  CHECK(circuit_breaker{{.window = breaker_window::time_based, .slow_call_duration = 1s}}.tracks_slow_calls());
}

TEST_CASE("time-based window: calls that leave the window stay in the call counters", "[circuit_breaker]") {
  manual_clock clk;  // starts at 1 h: a bucket boundary
  circuit_breaker cb{{.clock = clk,
                      .window = breaker_window::time_based,
                      .window_duration = 4s,
                      .window_buckets = 4,
                      .minimum_calls = 100,  // never opens: this test is about counting
                      .slow_call_duration = 1s}};
  auto slow = [&] {
    clk.advance(2s);
    return 1;
  };
  std::uint64_t last_successful = 0;
  auto check_counts = [&](std::uint64_t successful, std::uint64_t failed, std::uint64_t slow_calls) {
    const auto s = cb.stats();
    CHECK(s.successful == successful);
    CHECK(s.failed == failed);
    CHECK(s.slow == slow_calls);
    CHECK(s.successful >= last_successful);
    last_successful = s.successful;
  };
  (void)cb.try_call(ok);
  fail_n(cb, 1);
  check_counts(1, 1, 0);
  CHECK(cb.call(slow) == 1);  // ends 2 s later, in the third bucket
  check_counts(2, 1, 1);
  for (int lap = 0; lap < 3; ++lap) {  // each bucket of the ring reused three times over
    for (int b = 0; b < 4; ++b) {
      clk.advance(1s);
      (void)cb.try_call(ok);
      (void)cb.try_call(ok);
      fail_n(cb, 1);
    }
  }
  check_counts(2 + 24, 1 + 12, 1);
  CHECK(cb.stats().window_calls == 4 * 3);
  clk.advance(1h);  // the whole window is stale, and nothing reused it
  CHECK(cb.stats().window_calls == 0);
  check_counts(26, 13, 1);
  (void)cb.try_call(ok);
  check_counts(27, 13, 1);
  cb.reset();  // clears the window
  CHECK(cb.stats().window_calls == 0);
  check_counts(27, 13, 1);
  fail_n(cb, 1);
  check_counts(27, 14, 1);
}

TEST_CASE("slow calls open a breaker that sees no failure", "[circuit_breaker]") {
  manual_clock clk;
  circuit_breaker cb{{.clock = clk,
                      .window = breaker_window::count_based,
                      .break_duration = 5s,
                      .window_size = 4,
                      .minimum_calls = 4,
                      .failure_rate_threshold = 1.0,
                      .slow_call_duration = 1s,
                      .slow_call_rate_threshold = 0.5}};
  auto slow = [&] {
    clk.advance(2s);
    return 1;
  };
  auto just_enough = [&] {
    clk.advance(1s);  // not slower than the limit
    return 1;
  };
  CHECK(cb.call(ok) == 42);
  CHECK(cb.call(just_enough) == 1);
  CHECK(cb.call(slow) == 1);
  CHECK(cb.state() == closed);
  CHECK(cb.call(slow) == 1);  // 2 of 4 slow
  CHECK(cb.state() == open);
  const auto s = cb.stats();
  CHECK(s.slow == 2);
  CHECK(s.successful == 4);
  CHECK(s.failed == 0);

  clk.advance(5s);
  CHECK(cb.call(slow) == 1);  // a slow trial counts against the dependency
  CHECK(cb.state() == open);
}

TEST_CASE("the break grows while the dependency keeps failing, up to the cap", "[circuit_breaker]") {
  manual_clock clk;
  circuit_breaker cb{{.clock = clk,
                      .fail_max = 1,
                      .break_duration = 10s,
                      .break_duration_multiplier = 2.0,
                      .max_break_duration = 35s}};
  fail_n(cb, 1);
  CHECK(cb.try_call(ok).rejection().retry_after == 10s);
  clk.advance(10s);
  fail_n(cb, 1);
  CHECK(cb.try_call(ok).rejection().retry_after == 20s);
  clk.advance(20s);
  fail_n(cb, 1);
  CHECK(cb.try_call(ok).rejection().retry_after == 35s);  // 40 s capped
  CHECK(cb.stats().break_duration == 35s);
  clk.advance(35s);
  CHECK(cb.call(ok) == 42);
  CHECK(cb.state() == closed);
  fail_n(cb, 1);
  CHECK(cb.try_call(ok).rejection().retry_after == 10s);  // a closing starts over
}

TEST_CASE("half_open admits half_open_max_calls trials and closes after success_threshold", "[circuit_breaker]") {
  manual_clock clk;
  circuit_breaker cb{
      {.clock = clk, .fail_max = 1, .break_duration = 1s, .half_open_max_calls = 2, .success_threshold = 3}};
  fail_n(cb, 1);
  clk.advance(1s);
  auto a = cb.enter();
  auto b = cb.enter();
  CHECK(a.is_trial());
  CHECK(b.is_trial());
  {
    auto c = cb.try_enter();
    CHECK_FALSE(c);
    CHECK(c.rejection().is(circuit_open_kind));
  }
  a.success();  // frees a trial slot
  auto c = cb.enter();
  b.success();
  CHECK(cb.state() == half_open);
  c.success();
  CHECK(cb.state() == closed);
}

TEST_CASE("a half_open breaker whose trials never answer reopens after max_wait_in_half_open", "[circuit_breaker]") {
  manual_clock clk;
  circuit_breaker cb{{.clock = clk, .fail_max = 1, .break_duration = 10s, .max_wait_in_half_open = 30s}};
  transition_log log{cb};
  fail_n(cb, 1);
  clk.advance(10s);
  std::optional<circuit_breaker::scope> lost{cb.enter()};  // the caller vanished with the trial
  CHECK_FALSE(cb.try_enter());
  clk.advance(29s);
  CHECK(cb.state() == half_open);
  clk.advance(1s);
  CHECK(cb.state() == open);
  clk.advance(10s);
  auto fresh = cb.enter();
  CHECK(fresh.is_trial());
  lost.reset();  // the stale trial finally reports success: it belongs to an older half-open period
  CHECK(cb.state() == half_open);
  fresh.success();
  CHECK(cb.state() == closed);
  CHECK(log.get() == std::vector<std::pair<circuit_state, circuit_state>>{
                         {closed, open}, {open, half_open}, {half_open, open}, {open, half_open}, {half_open, closed}});
}

TEST_CASE("half_open with every trial slot taken: retry_after is when a trial will pass at the latest",
          "[circuit_breaker]") {
  manual_clock clk;
  circuit_breaker cb{{.clock = clk, .fail_max = 1, .break_duration = 10s, .max_wait_in_half_open = 30s}};
  fail_n(cb, 1);
  clk.advance(10s);
  std::optional<circuit_breaker::scope> lost{cb.enter()};  // the only trial slot; it never answers
  clk.advance(5s);
  const auto refused = cb.try_call(ok);
  REQUIRE(refused.has_rejection());
  // 25 s until the half-open period gives up on the trial, then a 10 s break.
  CHECK(refused.rejection().retry_after == 35s);
  clk.advance(35s - 1ns);
  CHECK(cb.try_call(ok).rejection().retry_after == 1ns);  // reopened when the period ran out, not when noticed
  clk.advance(1ns);
  auto next = cb.try_enter();
  CHECK(next.is_trial());
}

TEST_CASE("half_open retry_after counts the grown break, and a late trial failure keeps it", "[circuit_breaker]") {
  manual_clock clk;
  circuit_breaker cb{{.clock = clk,
                      .fail_max = 1,
                      .break_duration = 10s,
                      .max_wait_in_half_open = 30s,
                      .break_duration_multiplier = 2.0,
                      .max_break_duration = 1h}};
  fail_n(cb, 1);
  clk.advance(10s);
  auto trial = cb.enter();
  CHECK(cb.try_call(ok).rejection().retry_after == 30s + 20s);  // the next break is twice the first
  clk.advance(35s);                                             // past the half-open deadline, and nobody looked
  trial.failure();  // the late trial's failure reopens it as of the deadline
  CHECK(cb.state() == open);
  CHECK(cb.try_call(ok).rejection().retry_after == 15s);  // 30 s + 20 s - 35 s
}

TEST_CASE("a break or half-open wait of duration::max() saturates instead of wrapping", "[circuit_breaker]") {
  SECTION("max_wait_in_half_open = duration::max(): half-open until a trial answers, retry_after stays positive") {
    manual_clock clk;
    circuit_breaker cb{{.clock = clk, .fail_max = 1, .break_duration = 10s, .max_wait_in_half_open = duration::max()}};
    fail_n(cb, 1);
    clk.advance(10s);
    auto trial = cb.enter();
    const auto refused = cb.try_call(ok);
    REQUIRE(refused.has_rejection());
    CHECK(refused.rejection().retry_after > max_duration);  // "never", not -9223372035854775809 ns
    clk.advance(24h * 365 * 50);
    CHECK(cb.state() == half_open);
    CHECK(cb.try_call(ok).rejection().retry_after > max_duration);
    trial.success();
    CHECK(cb.state() == closed);
  }
  SECTION("a grown break capped at duration::max() keeps the breaker open") {
    manual_clock clk;
    circuit_breaker cb{{.clock = clk,
                        .fail_max = 1,
                        .break_duration = max_duration,
                        .break_duration_multiplier = 1e6,
                        .max_break_duration = duration::max()}};
    fail_n(cb, 1);
    CHECK(cb.try_call(ok).rejection().retry_after == max_duration);
    clk.advance(max_duration);
    fail_n(cb, 1);              // the trial fails: the next break is duration::max()
    CHECK(cb.state() == open);  // before, now + break wrapped and it was half-open at once
    const auto refused = cb.try_call(ok);
    REQUIRE(refused.has_rejection());
    CHECK(refused.rejection().retry_after > max_duration);
    clk.advance(24h * 365 * 50);
    CHECK(cb.state() == open);
  }
}

TEST_CASE("a retry waits out a half-open breaker's retry_after, and then its trial passes", "[circuit_breaker]") {
  manual_clock clk{manual_clock::auto_advance};
  circuit_breaker cb{{.clock = clk, .fail_max = 1, .break_duration = 10s, .max_wait_in_half_open = 30s}};
  fail_n(cb, 1);
  clk.advance(10s);
  std::optional<circuit_breaker::scope> lost{cb.enter()};
  auto fetch = resilient{ok, retry{{.max_retries = 1, .base_delay = 1s}}, cb}.with_clock(clk);
  const auto start = clk.now();
  CHECK(fetch() == 42);
  CHECK(clk.now() - start == 40s);
  CHECK(cb.state() == closed);
}

TEST_CASE("an isolated breaker gives no retry_after, so a retry keeps its own backoff", "[circuit_breaker]") {
  manual_clock clk{manual_clock::auto_advance};
  circuit_breaker cb{{.clock = clk}};
  cb.isolate();
  const auto refused = cb.try_call(ok);
  REQUIRE(refused.has_rejection());
  CHECK(refused.rejection().retry_after == 0s);
  auto fetch = resilient{ok, retry{{.max_retries = 2, .base_delay = 1s}}, cb}.with_clock(clk);
  const auto start = clk.now();
  const auto r = fetch.try_call();
  REQUIRE(r.has_rejection());
  CHECK(r.rejection().is(circuit_open_kind));
  CHECK(clk.now() - start == 3s);  // 1 s + 2 s: it neither waits forever nor hammers the breaker
}

TEST_CASE("isolate forces it open until reset; reset clears the counts", "[circuit_breaker]") {
  manual_clock clk;
  circuit_breaker cb{{.clock = clk}};
  transition_log log{cb};
  fail_n(cb, 4);
  cb.isolate();
  CHECK(cb.state() == open);
  CHECK(cb.stats().isolated);
  clk.advance(1h);
  CHECK(cb.state() == open);
  CHECK(cb.try_call(ok).has_rejection());
  cb.reset();
  CHECK(cb.state() == closed);
  CHECK_FALSE(cb.stats().isolated);
  fail_n(cb, 4);  // the 4 failures before the isolation are forgotten
  CHECK(cb.state() == closed);
  CHECK(cb.stats().failed == 8);  // call counters only grow
  CHECK(log.get() == std::vector<std::pair<circuit_state, circuit_state>>{{closed, open}, {open, closed}});

  fail_n(cb, 1);
  CHECK(cb.state() == open);
  cb.isolate();  // open -> isolated is no visible change
  CHECK(log.get().size() == 3);
}

TEST_CASE("a scope records success, or failure while an exception unwinds through it", "[circuit_breaker]") {
  manual_clock clk;
  circuit_breaker cb{{.clock = clk, .fail_max = 2}};
  { auto scope = cb.enter(); }
  CHECK(cb.stats().successful == 1);

  for (int i = 0; i < 2; ++i) {
    try {
      auto scope = cb.enter();
      throw service_down{};
    } catch (const service_down&) {
    }
  }
  CHECK(cb.stats().failed == 2);
  CHECK(cb.state() == open);
  CHECK_THROWS_AS(cb.enter(), circuit_open_error);
  auto refused = cb.try_enter();
  CHECK_FALSE(refused);
  CHECK(refused.rejection().retry_after == 60s);

  cb.reset();
  {
    auto scope = cb.enter();
    scope.failure();  // said explicitly: the destructor adds nothing
  }
  try {
    auto scope = cb.enter();
    scope.success();  // finished before an unrelated exception
    throw std::logic_error{"report template missing"};
  } catch (const std::logic_error&) {
  }
  const auto s = cb.stats();
  CHECK(s.failed == 3);
  CHECK(s.successful == 2);
  CHECK(cb.state() == closed);
}

TEST_CASE("a scope inside a destructor that runs during unwinding counts only its own exceptions",
          "[circuit_breaker]") {
  circuit_breaker cb;
  struct cleanup {
    circuit_breaker& cb;
    ~cleanup() {
      auto scope = cb.enter();  // entered while another exception unwinds: that one is not ours
    }
  };
  try {
    cleanup c{cb};
    throw service_down{};
  } catch (const service_down&) {
  }
  CHECK(cb.stats().successful == 1);
  CHECK(cb.stats().failed == 0);
}

TEST_CASE("which failures count: ignore and handle, result predicate, foreign rejections", "[circuit_breaker]") {
  manual_clock clk;
  auto lookup_missing = []() -> int { throw not_found{}; };
  SECTION("ignored exceptions count as neither") {
    circuit_breaker cb{{.clock = clk, .fail_max = 2, .ignore = failures::exceptions<not_found>()}};
    for (int i = 0; i < 5; ++i) CHECK_THROWS_AS(cb.call(lookup_missing), not_found);
    CHECK(cb.state() == closed);
    CHECK(cb.stats().ignored == 5);
    fail_n(cb, 2);
    CHECK(cb.state() == open);
  }
  SECTION("only handled exceptions are failures; others are successes") {
    circuit_breaker cb{
        {.clock = clk, .fail_max = 2, .handle = failures::exceptions<service_down>() | failures::rejections()}};
    fail_n(cb, 1);
    (void)cb.try_call(lookup_missing);  // a success: the service answered
    fail_n(cb, 1);
    CHECK(cb.state() == closed);
    CHECK(cb.stats().successful == 1);
    fail_n(cb, 1);
    CHECK(cb.state() == open);
  }
  SECTION("a scope classifies an exception it is given") {
    circuit_breaker cb{{.clock = clk, .fail_max = 1, .ignore = failures::exceptions<not_found>()}};
    cb.enter().failure(std::make_exception_ptr(not_found{}));
    CHECK(cb.state() == closed);
    cb.enter().failure(std::make_exception_ptr(service_down{}));
    CHECK(cb.state() == open);
  }
  SECTION("a returned value can be a failure") {
    circuit_breaker cb{
        {.clock = clk, .fail_max = 2, .handle = failures::any() | failures::results([](const int& status) {
                                                  return status >= 500;
                                                })}};
    auto status = [](int s) { return s; };
    CHECK(cb.call(status, 503) == 503);
    CHECK(cb.try_call(status, 200).value() == 200);
    resilient wrapped{status, cb};
    CHECK(wrapped(502) == 502);
    CHECK(cb.state() == closed);
    CHECK(wrapped(500) == 500);
    CHECK(cb.state() == open);
  }
  SECTION("an inner timeout is a failure; other rejections are ignored") {
    circuit_breaker cb{{.clock = clk, .fail_max = 1}};
    (void)resilient{ok, cb, reject_with{rate_limited_kind}}.try_call();
    (void)resilient{ok, cb, reject_with{bulkhead_full_kind}}.try_call();
    CHECK(cb.state() == closed);
    CHECK(cb.stats().ignored == 2);
    (void)resilient{ok, cb, reject_with{timeout_kind}}.try_call();
    CHECK(cb.state() == open);
  }
  SECTION("a timeout counts only while handle takes it; ignore can take it too") {
    circuit_breaker narrow{{.clock = clk, .fail_max = 1, .handle = failures::exceptions<service_down>()}};
    (void)resilient{ok, narrow, reject_with{timeout_kind}}.try_call();
    CHECK(narrow.state() == closed);
    CHECK(narrow.stats().ignored == 1);
    circuit_breaker ignoring{{.clock = clk, .fail_max = 1, .ignore = failures::rejections({timeout_kind})}};
    (void)resilient{ok, ignoring, reject_with{timeout_kind}}.try_call();
    CHECK(ignoring.state() == closed);
    CHECK(ignoring.stats().ignored == 1);
  }
  SECTION("a result predicate on another type leaves those calls successes; ignore wins over handle") {
    circuit_breaker cb{{.clock = clk,
                        .fail_max = 1,
                        .handle = failures::any() | failures::results([](const std::string& s) { return s.empty(); }),
                        .ignore = failures::exceptions<not_found>()}};
    CHECK(cb.call([] { return 500; }) == 500);  // an int: the predicate takes strings
    CHECK(cb.stats().successful == 1);
    CHECK_THROWS_AS(cb.call(lookup_missing), not_found);
    CHECK(cb.stats().ignored == 1);
    CHECK(cb.state() == closed);
    CHECK(cb.call([] { return std::string{}; }).empty());
    CHECK(cb.state() == open);
  }
}

TEST_CASE("bad options throw invalid_argument naming the field", "[circuit_breaker]") {
  auto message = [](circuit_breaker_options o) -> std::string {
    try {
      circuit_breaker cb{std::move(o)};
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "accepted";
  };
  using Catch::Matchers::Contains;
  CHECK_THAT(message({.fail_max = 0}), Contains("fail_max"));
  CHECK_THAT(message({.break_duration = -1s}), Contains("break_duration"));
  CHECK_THAT(message({.break_duration = 0s}), Contains("break_duration"));
  CHECK_THAT(message({.window = breaker_window::count_based, .window_size = 0}), Contains("window_size"));
  CHECK_THAT(message({.window = breaker_window::count_based, .window_size = 10, .minimum_calls = 11}),
             Contains("minimum_calls"));
  CHECK_THAT(message({.window = breaker_window::time_based, .window_duration = 0s}), Contains("window_duration"));
  CHECK_THAT(message({.window = breaker_window::time_based, .window_buckets = 0}), Contains("window_buckets"));
  CHECK_THAT(message({.window = breaker_window::count_based, .failure_rate_threshold = 0.0}),
             Contains("failure_rate_threshold"));
  CHECK_THAT(message({.window = breaker_window::count_based, .failure_rate_threshold = 1.5}),
             Contains("failure_rate_threshold"));
  CHECK_THAT(message({.failure_rate_threshold = std::nan("")}), Contains("failure_rate_threshold"));
  CHECK_THAT(message({.slow_call_rate_threshold = 0.0}), Contains("slow_call_rate_threshold"));
  CHECK_THAT(message({.slow_call_duration = -1s}), Contains("slow_call_duration"));
  CHECK_THAT(message({.slow_call_duration = 1s}), Contains("slow_call_duration"));  // consecutive mode has no window
  CHECK_THAT(message({.half_open_max_calls = 0}), Contains("half_open_max_calls"));
  CHECK_THAT(message({.success_threshold = 0}), Contains("success_threshold"));
  CHECK_THAT(message({.max_wait_in_half_open = 0s}), Contains("max_wait_in_half_open"));
  CHECK_THAT(message({.break_duration_multiplier = 0.5}), Contains("break_duration_multiplier"));
  CHECK_THAT(message({.break_duration_multiplier = 2.0, .max_break_duration = 1s}), Contains("max_break_duration"));
  // Periods beyond max_duration (100 years) are mistakes; caps may be duration::max().
  CHECK_THAT(message({.break_duration = duration::max()}), Contains("break_duration"));
  CHECK_THAT(message({.break_duration = max_duration + 1ns}), Contains("break_duration"));
  CHECK_THAT(message({.window = breaker_window::time_based, .window_duration = duration::max()}),
             Contains("window_duration"));
  CHECK_THAT(message({.window = breaker_window::count_based, .slow_call_duration = duration::max()}),
             Contains("slow_call_duration"));
  CHECK(message({.break_duration = max_duration}) == "accepted");
  CHECK(message({.max_wait_in_half_open = duration::max(),
                 .break_duration_multiplier = 2.0,
                 .max_break_duration = duration::max()}) == "accepted");
  CHECK(message({.break_duration = 1h}) == "accepted");  // the cap matters only for a growing break
  CHECK(message({}) == "accepted");
}

TEST_CASE("consecutive mode reads no clock in the closed state; an observer makes it time calls", "[circuit_breaker]") {
  auto clk = std::make_shared<counting_clock>();
  circuit_breaker cb{{.clock = clock_ref{clk}, .fail_max = 3}};
  for (int i = 0; i < 10; ++i) CHECK(cb.call(ok) == 42);
  fail_n(cb, 2);
  CHECK(clk->reads.load() == 0);

  std::vector<std::pair<duration, call_status>> seen;
  cb.on_call_recorded([&](duration d, call_status s) { seen.emplace_back(d, s); });
  auto takes_3s = [&] {
    clk->time.advance(3s);
    return 1;
  };
  CHECK(cb.call(takes_3s) == 1);
  CHECK(clk->reads.load() == 2);
  fail_n(cb, 1);
  CHECK(cb.state() == closed);  // the success above reset the count
  REQUIRE(seen.size() == 2);
  CHECK(seen[0] == std::pair{duration{3s}, call_status::success});
  CHECK(seen[1] == std::pair{duration{0s}, call_status::failure});
}

TEST_CASE("events: one circuit_state_changed per transition, circuit_rejected per refusal", "[circuit_breaker]") {
  manual_clock clk;
  circuit_breaker cb{{.name = "llm", .clock = clk, .fail_max = 1}};
  std::vector<event> seen;
  cb.events().subscribe([&](const event& e) { seen.push_back(e); });
  fail_n(cb, 1);
  (void)cb.try_call(ok);
  REQUIRE(seen.size() == 2);
  const auto& changed = seen[0];
  REQUIRE(changed.is(circuit_state_changed_event));
  CHECK(changed.source() == "llm");
  CHECK(circuit_state_of(changed.get<std::string_view>("from")) == closed);
  CHECK(circuit_state_of(changed.get<std::string_view>("to")) == open);
  const auto& rejected = seen[1];
  REQUIRE(rejected.is(circuit_rejected_event));
  CHECK(rejected.source() == "llm");
  CHECK(rejected.get<duration>("retry_after") == 60s);
}

TEST_CASE("copies share state; the registry shares breakers by name", "[circuit_breaker]") {
  circuit_breaker a{{.fail_max = 1}};
  const circuit_breaker b = a;
  fail_n(b, 1);
  CHECK(a.state() == open);
  CHECK(a == b);

  auto& registry = global_circuit_breakers();
  auto x = registry.get_or_create("test.registry.factor_api", {.fail_max = 2});
  auto y = registry.get_or_create("test.registry.factor_api", {.fail_max = 9});
  CHECK(x == y);
  CHECK(y.options().fail_max == 2);
  CHECK(x.name() == "test.registry.factor_api");
  REQUIRE(registry.find("test.registry.factor_api"));
  CHECK(*registry.find("test.registry.factor_api") == x);
  CHECK_FALSE(registry.find("test.registry.nothing"));
  bool listed = false;
  for (const auto& cb : registry.all()) listed = listed || cb == x;
  CHECK(listed);
  CHECK(registry.remove("test.registry.factor_api"));
  CHECK_FALSE(registry.find("test.registry.factor_api"));
}

TEST_CASE("stress: 8 threads, many transitions, every call and transition accounted for", "[circuit_breaker][stress]") {
  manual_clock clk;
  auto window = GENERATE(breaker_window::consecutive, breaker_window::count_based, breaker_window::time_based);
  circuit_breaker cb{{.clock = clk,
                      .window = window,
                      .fail_max = 3,
                      .break_duration = 1ms,
                      .window_size = 8,
                      .window_duration = 8ms,
                      .window_buckets = 4,
                      .minimum_calls = 4,
                      .failure_rate_threshold = 0.3,
                      .half_open_max_calls = 2,
                      .success_threshold = 2}};
  transition_log log{cb};
  constexpr int threads = 8;
  std::atomic<std::uint64_t> values{0}, exceptions{0}, rejections{0};
  {
    std::vector<std::jthread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        std::uint32_t x = 0x9e3779b9u * static_cast<std::uint32_t>(t + 1);
        std::uint64_t v = 0, e = 0, r = 0;
        for (int i = 0; i < stress_calls; ++i) {
          // The workers move time themselves, so the breaker cycles through
          // every state however the threads are scheduled.
          if (i % 16 == 0) clk.advance(20us);
          x ^= x << 13;
          x ^= x >> 17;
          x ^= x << 5;
          // Bad spells (80 % failures) between healthy ones (5 %).
          const bool bad_spell = (i / 500) % 3 == 0;
          const bool failing = x % 100 < (bad_spell ? 80u : 5u);
          auto o = cb.try_call([failing] { return failing ? fail() : ok(); });
          if (o.has_value()) ++v;
          else if (o.has_exception()) ++e;
          else ++r;
        }
        values += v;
        exceptions += e;
        rejections += r;
      });
    }
  }
  const auto s = cb.stats();
  CHECK(s.calls() == std::uint64_t{threads} * stress_calls);
  CHECK(s.successful == values.load());
  CHECK(s.failed == exceptions.load());
  CHECK(s.rejected == rejections.load());
  CHECK(s.ignored == 0);

  const auto seen = log.get();
  INFO("transitions " << s.transition_count() << " rejected " << s.rejected << " ok " << s.successful);
  CHECK(s.transitions[0][1] >= 5);
  CHECK(s.transitions[2][0] >= 1);
  CHECK(seen.size() == s.transition_count());
  std::array<std::array<std::uint64_t, 3>, 3> counted{};
  auto state = closed;
  bool chained = true;
  for (const auto& [from, to] : seen) {
    chained = chained && from == state && from != to;
    state = to;
    ++counted[static_cast<std::size_t>(from)][static_cast<std::size_t>(to)];
  }
  CHECK(chained);  // each transition starts where the previous one ended: none was performed twice
  CHECK(counted == s.transitions);
  CHECK(s.transitions[0][2] == 0);  // closed never jumps to half_open
  CHECK(s.transitions[1][0] == 0);  // nor open to closed without reset()
}

TEST_CASE("reset() racing a transition is announced after it: listeners hear the order the state changed",
          "[circuit_breaker]") {
  manual_clock clk;
  circuit_breaker cb{{.clock = clk, .fail_max = 1, .break_duration = 1h}};
  // The first listener keeps the opening thread inside its announcement
  // until reset() has changed the state: reset() overtook the opening.
  std::atomic<bool> first{true};
  cb.on_state_change([&](circuit_state, circuit_state to) {
    if (to == open && first.exchange(false)) spin_until([&] { return cb.state() == closed; });
  });
  transition_log log{cb};
  std::jthread opener{[&] { fail_n(cb, 1); }};
  spin_until([&] { return cb.state() == open; });
  cb.reset();
  opener.join();
  using seen = std::vector<std::pair<circuit_state, circuit_state>>;
  CHECK(log.get() == seen{{closed, open}, {open, closed}});  // not open->closed, then closed->open on a closed breaker
  CHECK(cb.state() == closed);
}

TEST_CASE("stress: reset() and isolate() racing transitions, every listener hears one consistent chain",
          "[circuit_breaker][stress]") {
  manual_clock clk;
  circuit_breaker cb{{.clock = clk, .fail_max = 2, .break_duration = 1h}};
  transition_log first{cb}, second{cb};
#ifdef RESILIENCE_TEST_TSAN
  constexpr int rounds = 3'000;
#else
  constexpr int rounds = 100'000;
#endif
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < rounds; ++i) (void)cb.try_call((i + t) % 3 == 0 ? ok : fail);
      });
    for (int t = 0; t < 2; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < rounds / 10; ++i) (i + t) % 2 == 0 ? cb.reset() : cb.isolate();
      });
  }
  const auto s = cb.stats();
  for (const auto* log : {&first, &second}) {
    const auto seen = log->get();
    auto state = closed;
    bool chained = true;
    for (const auto& [from, to] : seen) {
      chained = chained && from == state && from != to;
      state = to;
    }
    CHECK(chained);
    CHECK(state == cb.state());  // the last state announced is the breaker's
    CHECK(seen.size() == s.transition_count());
  }
  CHECK(first.get() == second.get());
  CHECK(s.transitions[0][1] > 0);
  CHECK(s.transitions[1][0] > 0);
}

TEST_CASE("contention: exactly one thread opens it, half_open admits exactly half_open_max_calls",
          "[circuit_breaker]") {
  manual_clock clk;
  constexpr int threads = 8;
  circuit_breaker cb{{.clock = clk, .fail_max = 1, .break_duration = 1s, .half_open_max_calls = 3}};
  transition_log log{cb};
#ifdef RESILIENCE_TEST_TSAN
  constexpr int rounds = 20;
#else
  constexpr int rounds = 200;
#endif
  std::barrier sync{threads};
  std::atomic<int> trials{0}, refused{0};
  std::vector<std::jthread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int round = 0; round < rounds; ++round) {
        sync.arrive_and_wait();
        (void)cb.try_call(fail);  // every thread fails at once: one of them opens it
        sync.arrive_and_wait();
        if (t == 0) clk.advance(1s);
        sync.arrive_and_wait();
        auto scope = cb.try_enter();  // every thread wants the trial slots at once
        if (scope) ++trials;
        else ++refused;
        sync.arrive_and_wait();  // all asked before any trial answers
        if (scope) scope.success();
        sync.arrive_and_wait();
        if (t == 0) cb.reset();
      }
    });
  }
  workers.clear();
  CHECK(trials.load() == 3 * rounds);
  CHECK(refused.load() == (threads - 3) * rounds);
  const auto s = cb.stats();
  CHECK(s.transitions[0][1] == rounds);
  CHECK(s.transitions[1][2] == rounds);
  CHECK(s.transitions[2][0] == rounds);
  CHECK(log.get().size() == 3 * rounds);
}

TEST_CASE("a listener may call through the breaker it listens to", "[circuit_breaker]") {
  manual_clock clk;
  circuit_breaker cb{{.clock = clk, .fail_max = 1, .break_duration = 1s}};
  int probes = 0;
  cb.on_state_change([&](circuit_state, circuit_state to) {
    if (to == half_open) probes += cb.call(ok) == 42 ? 1 : 0;  // a health probe as the trial
  });
  fail_n(cb, 1);
  clk.advance(1s);
  CHECK(cb.state() == closed);
  CHECK(probes == 1);
  CHECK(cb.stats().transitions[2][0] == 1);
}

TEST_CASE(
    "one time line: with_clock(manual) refuses a breaker on the real clock; a wrapper follows its breaker's clock",
    "[circuit_breaker][clock]") {
  // Issue #11, item 12: a wrapper on a manual clock advanced 61 s left a
  // breaker built without a clock open forever (it read the real clock).
  manual_clock clk;
  bool fail = true;
  const auto call = [&fail] {
    if (fail) throw std::runtime_error{"factor api 503"};
    return 1.0;
  };
  circuit_breaker real_time{{.name = "factor_api", .fail_max = 1, .break_duration = 60s}};
  resilient mismatched{call, real_time};
  CHECK_THROWS_WITH(mismatched.with_clock(clk),
                    Catch::Matchers::Contains("policy 1 (circuit_breaker 'factor_api') reads another clock"));
  CHECK_THROWS_AS(mismatched.with_clock(clk), std::invalid_argument);

  circuit_breaker virtual_time{{.name = "factor_api", .clock = clk, .fail_max = 1, .break_duration = 60s}};
  resilient wrapped{call, virtual_time};  // no with_clock: the pipeline's clock is the breaker's
  wrapped.with_clock(clk);                // and saying it again is fine
  CHECK(wrapped.try_call().has_exception());
  CHECK(virtual_time.state() == circuit_state::open);
  clk.advance(61s);
  fail = false;
  CHECK(wrapped.try_call().has_value());
  CHECK(virtual_time.state() == circuit_state::closed);
}

TEST_CASE("reconfigure changes thresholds in place and keeps the count and the state",
          "[circuit_breaker][reconfigure]") {
  manual_clock clk;
  circuit_breaker cb{{.name = "factor_api", .clock = clk}};
  fail_n(cb, 3);
  auto o = cb.options();
  o.fail_max = 4;
  o.break_duration = 10s;
  cb.reconfigure(o);
  CHECK(cb.options().fail_max == 4);
  CHECK(cb.options().break_duration == 10s);
  CHECK(cb.stats().consecutive_failures == 3);  // the count carries over
  CHECK(cb.stats().failed == 3);
  fail_n(cb, 1);  // the fourth failure opens it under the new threshold
  CHECK(cb.state() == open);
  clk.advance(10s);  // the new break
  CHECK(cb.state() == half_open);

  // Lowering fail_max below the count in hand opens at the next failure.
  (void)cb.try_call(ok);
  CHECK(cb.state() == closed);
  fail_n(cb, 3);
  o.fail_max = 2;
  cb.reconfigure(o);
  CHECK(cb.state() == closed);
  fail_n(cb, 1);
  CHECK(cb.state() == open);
}

TEST_CASE("reconfigure keeps the breaker's name, clock and filters, and rejects changes of its shape",
          "[circuit_breaker][reconfigure]") {
  manual_clock clk;
  circuit_breaker cb{
      {.name = "erp_api", .clock = clk, .window = breaker_window::count_based, .window_size = 10, .minimum_calls = 5}};
  auto o = cb.options();
  o.name = "other";
  o.failure_rate_threshold = 0.2;
  cb.reconfigure(o);
  CHECK(cb.name() == "erp_api");
  CHECK(cb.options().failure_rate_threshold == 0.2);

  auto shape = cb.options();
  shape.window_size = 20;
  CHECK_THROWS_WITH(cb.reconfigure(shape),
                    "circuit_breaker: window_size cannot change at run time (build a new breaker)");
  shape = cb.options();
  shape.window = breaker_window::consecutive;
  CHECK_THROWS_WITH(cb.reconfigure(shape), "circuit_breaker: window cannot change at run time (build a new breaker)");
  shape = cb.options();
  shape.slow_call_duration = 1s;
  CHECK_THROWS_WITH(
      cb.reconfigure(shape),
      "circuit_breaker: slow_call_duration cannot turn slow-call tracking on or off at run time (build a new breaker)");
  auto bad = cb.options();
  bad.failure_rate_threshold = 1.5;
  CHECK_THROWS_WITH(cb.reconfigure(bad), "circuit_breaker: failure_rate_threshold must be in (0, 1]");
  CHECK(cb.options().failure_rate_threshold == 0.2);  // nothing changed

  // 1 failure in 5 calls now opens it (0.2), where 0.5 would not.
  for (int i = 0; i < 4; ++i) (void)cb.try_call(ok);
  fail_n(cb, 1);
  CHECK(cb.state() == open);
}

TEST_CASE("reconfigure under traffic: counts are kept and every call is counted once",
          "[circuit_breaker][reconfigure][concurrency]") {
  manual_clock clk;
  circuit_breaker cb{{.name = "db", .clock = clk, .fail_max = 1'000'000}};
  std::atomic<bool> stop{false};
  std::vector<std::thread> callers;
  std::atomic<std::uint64_t> calls{0};
  for (int t = 0; t < 2; ++t)
    callers.emplace_back([&, t] {
      while (!stop.load(std::memory_order_relaxed)) {
        if (t == 0) (void)cb.try_call(ok);
        else (void)cb.try_call(fail);
        calls.fetch_add(1, std::memory_order_relaxed);
      }
    });
  auto o = cb.options();
  for (int i = 0; i < 200; ++i) {
    o.fail_max = 500'000 + i;
    o.break_duration = std::chrono::seconds{1 + i % 7};
    cb.reconfigure(o);
    CHECK(cb.options().fail_max == 500'000 + i);
  }
  stop = true;
  for (auto& th : callers) th.join();
  const auto s = cb.stats();
  CHECK(s.calls() == calls.load());
  CHECK(cb.state() == closed);
}
