#include <resilience/executor.hpp>
#include <resilience/presets.hpp>
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>
#include <resilience/timeout.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <functional>
#include <latch>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/sanitizers.hpp"
#include "support/spin.hpp"

using namespace resilience;
using namespace std::chrono_literals;

namespace {

// Blocks until its token is stopped: no sleep, only a timer can end it.
int wait_for_stop(std::stop_token st) {
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lock{m};
  cv.wait(lock, st, [] { return false; });
  return 1;
}

// Records the deadline an inner policy sees.
struct deadline_probe {
  std::shared_ptr<time_point> seen = std::make_shared<time_point>();
  template <class Next>
  auto execute(call_context& ctx, Next&& next) const {
    *seen = ctx.deadline;
    return next(ctx);
  }
};
}  // namespace

TEST_CASE("operation types carry the seed's default timeouts", "[timeout]") {
  CHECK(default_timeout(operation_type::factor_lookup) == 5s);
  CHECK(default_timeout(operation_type::llm_inference) == 30s);
  CHECK(default_timeout(operation_type::erp_api_call) == 10s);
  CHECK(default_timeout(operation_type::database_query) == 10s);
  CHECK(default_timeout(operation_type::report_generation) == 60s);
  CHECK(default_timeout(operation_type::external_api) == 10s);
  timeout t{operation_type::llm_inference};
  CHECK(t.limit() == 30s);
  CHECK(t.name() == "llm_inference");
  CHECK(timeout{250ms}.limit() == 250ms);
  CHECK(timeout{{.limit = 2s, .mode = timeout_mode::detached}}.mode() == timeout_mode::detached);
}

TEST_CASE("a limit <= 0 or NaN is rejected when the timeout is built", "[timeout]") {
  CHECK_THROWS_WITH(timeout{0s}, "timeout: limit must be > 0");
  CHECK_THROWS_WITH(timeout{-1ms}, "timeout: limit must be > 0");
  CHECK_THROWS_WITH(timeout{{.limit = duration::zero()}}, "timeout: limit must be > 0");
  CHECK_THROWS_WITH(timeout{std::chrono::duration<double>{std::nan("")}}, "timeout: limit must not be NaN");
  CHECK_THROWS_WITH(timeout{std::chrono::duration<double>{-0.5}}, "timeout: limit must be > 0");
  CHECK(timeout{std::chrono::duration<double>{0.25}}.limit() == 250ms);
}

TEST_CASE("a limit that does not fit in nanoseconds or passes 100 years is rejected, not wrapped", "[timeout]") {
  using std::chrono::hours;
  const std::string too_long = "timeout: limit must be within 100 years (resilience::max_duration)";
  CHECK_THROWS_WITH(timeout{hours{5'124'096}}, too_long);       // used to become a 1526 s limit
  CHECK_THROWS_WITH(timeout{hours{24 * 365 * 300}}, too_long);  // used to say "limit must be > 0"
  CHECK_THROWS_WITH(timeout{std::chrono::duration<double>{1e300}}, too_long);
  CHECK_THROWS_WITH(timeout{{.limit = duration::max()}}, too_long);
  CHECK(timeout{hours{24 * 365 * 100}}.limit() == max_duration);
}

TEST_CASE("cooperative: a call within the limit returns its value and leaves no timer", "[timeout]") {
  manual_clock clk;
  resilient r{[](std::stop_token st, int x) { return st.stop_requested() ? -1 : x * 2; }, timeout{5s}};
  r.with_clock(clk);
  CHECK(r(21) == 42);
  CHECK(clk.pending_timers() == 0);
}

TEST_CASE("cooperative: at the deadline the timer requests stop and the outcome is timeout_error", "[timeout]") {
  manual_clock clk;
  std::atomic<bool> saw_stop{false};
  resilient r{[&](std::stop_token st) {
                clk.sleep_until(no_deadline, st);  // parks until stopped
                saw_stop = st.stop_requested();
                return 7;  // returned after the deadline: dropped
              },
              timeout{operation_type::factor_lookup}};
  r.with_clock(clk);
  int events = 0;
  std::get<0>(r.policies().policies()).events().subscribe([&](const event& e) {
    if (e.is(timeout_occurred_event)) {
      CHECK(e.get<duration>("limit") == 5s);
      ++events;
    }
  });
  outcome<int> result{0};
  std::jthread caller{[&] { result = r.try_call(); }};
  clk.wait_for_sleepers(1);
  clk.advance(4s);
  CHECK(clk.sleepers() == 1);  // not yet
  clk.advance(1s);
  caller.join();
  CHECK(saw_stop.load());
  REQUIRE(result.has_rejection());
  CHECK(result.rejection().is(timeout_kind));
  CHECK(timeout_kind.limit(result.rejection()) == 5s);
  CHECK(result.rejection().source == "factor_lookup");
  CHECK(events == 1);
  CHECK_THROWS_AS(result.value(), timeout_error);
}

TEST_CASE("cooperative: the caller's stop_token still reaches the callable", "[timeout]") {
  manual_clock clk;
  resilient r{[&](std::stop_token st) { return clk.sleep_until(no_deadline, st) ? 1 : 2; }, timeout{5s}};
  r.with_clock(clk);
  std::stop_source caller_stop;
  int got = 0;
  std::jthread caller{[&] { got = r.call_with({.stop = caller_stop.get_token()}); }};
  clk.wait_for_sleepers(1);
  caller_stop.request_stop();
  caller.join();
  CHECK(got == 2);  // stopped by the caller, not by the timer: the value stands
}

TEST_CASE("cooperative on the real clock: a fast call is not disturbed", "[timeout]") {
  resilient r{[](std::stop_token st, int x) { return st.stop_requested() ? -1 : x; }, timeout{1h}};
  for (int i = 0; i < 100; ++i) CHECK(r(i) == i);
  resilient plain{[](int x) { return x; }, timeout{{.limit = 1h, .mode = timeout_mode::cooperative}}};
  CHECK(plain(5) == 5);
}

TEST_CASE("a timeout narrows the deadline for inner policies, and restores it after", "[timeout]") {
  manual_clock clk;
  deadline_probe probe;
  resilient r{[](std::stop_token) { return 1; }, timeout{3s}, probe};
  r.with_clock(clk);
  const time_point start = clk.now();
  CHECK(r() == 1);
  CHECK(*probe.seen == start + 3s);
  const time_point caller_deadline = start + 1s;
  CHECK(r.call_with({.deadline = caller_deadline}) == 1);
  CHECK(*probe.seen == caller_deadline);  // never loosened
}

TEST_CASE("detached: the caller gets timeout_error at the deadline; the abandoned work owns its arguments",
          "[timeout]") {
  manual_clock clk;
  manual_executor ex;
  auto seen = std::make_shared<std::string>();
  resilient r{[seen](const std::string& activity) {
                *seen = activity;
                return activity.size();
              },
              timeout{10s}};
  r.with_clock(clk).with_executor(ex);
  outcome<std::size_t> result{std::size_t{0}};
  {
    std::jthread caller{[&] {
      std::string activity{"purchased goods and services, category 1"};  // dies when the caller returns
      result = r.try_call(activity);
    }};
    clk.wait_for_sleepers(1);
    CHECK(ex.pending() == 1);  // the call waits on the executor, the caller on the clock
    clk.advance(10s);
  }
  REQUIRE(result.has_rejection());
  CHECK(result.rejection().is(timeout_kind));
  CHECK(seen->empty());
  CHECK(ex.run_all() == 1);  // the abandoned work finishes later, on its own copies
  CHECK(*seen == "purchased goods and services, category 1");
}

TEST_CASE("detached: a call that ends in time returns its value, or its exception unchanged", "[timeout]") {
  manual_clock clk;
  manual_executor ex;
  auto boom = std::make_shared<std::runtime_error>("erp down");
  resilient r{[boom](int x) {
                if (x < 0) throw boom;
                return x + 1;
              },
              timeout{{.limit = 10s, .mode = timeout_mode::detached}}};
  r.with_clock(clk).with_executor(ex);
  for (int x : {41, -1}) {
    outcome<int> result{0};
    std::jthread caller{[&] { result = r.try_call(x); }};
    clk.wait_for_sleepers(1);
    spin_until([&] { return ex.pending() == 1; });
    ex.run_one();  // completes the call, which wakes the caller
    caller.join();
    if (x > 0) {
      CHECK(result.value() == 42);
    } else {
      REQUIRE(result.has_exception());
      try {
        std::rethrow_exception(result.exception());
      } catch (const std::shared_ptr<std::runtime_error>& e) {
        CHECK(e == boom);  // the same object
      }
    }
  }
  CHECK(clk.pending_timers() == 0);
}

TEST_CASE("detached: a stop-aware callable in detached mode is asked to stop at the deadline", "[timeout]") {
  manual_clock clk;
  manual_executor ex;
  std::atomic<bool> stopped{false};
  resilient r{[&](std::stop_token st) {
                stopped = st.stop_requested();
                return 1;
              },
              timeout{{.limit = 1s, .mode = timeout_mode::detached}}};
  r.with_clock(clk).with_executor(ex);
  outcome<int> result{0};
  std::jthread caller{[&] { result = r.try_call(); }};
  clk.wait_for_sleepers(1);
  clk.advance(1s);
  caller.join();
  CHECK(result.has_rejection());
  ex.run_all();
  CHECK(stopped.load());
}

TEST_CASE("retry, timeout: each attempt gets its own limit", "[timeout]") {
  manual_clock clk{manual_clock::auto_advance};
  int attempts = 0;
  // Every attempt hangs for 6 s of virtual time; the timer fires at 5 s inside the advance.
  resilient r{[&](std::stop_token st) {
                ++attempts;
                clk.advance(6s);
                return st.stop_requested() ? -1 : 1;
              },
              retry{{.max_retries = 2, .base_delay = 1s}}, timeout{5s}};
  r.with_clock(clk);
  const time_point start = clk.now();
  auto result = r.try_call();
  CHECK(attempts == 3);
  REQUIRE(result.has_rejection());
  CHECK(result.rejection().is(timeout_kind));
  CHECK(clk.now() - start == 6s + 1s + 6s + 2s + 6s);
}

TEST_CASE("timeout, retry: one limit for the whole retried call; retry never sleeps past it", "[timeout]") {
  manual_clock clk{manual_clock::auto_advance};
  int attempts = 0;
  resilient r{[&](std::stop_token) -> int {
                ++attempts;
                clk.advance(2s);
                throw std::runtime_error{"factor api 503"};
              },
              timeout{10s}, retry{{.max_retries = 5, .base_delay = 1s}}};
  r.with_clock(clk);
  const time_point start = clk.now();
  auto result = r.try_call();
  // t=2 fail, wait 1 -> t=3, fail at 5, wait 2 -> 7, fail at 9: the next 4 s wait would cross t=10, so retry gives up.
  CHECK(attempts == 3);
  CHECK(clk.now() - start == 9s);
  REQUIRE(result.has_exception());
  CHECK_THROWS_WITH(std::rethrow_exception(result.exception()), "factor api 503");
}

TEST_CASE("timeout, retry: the whole call times out when an attempt runs past the limit", "[timeout]") {
  manual_clock clk{manual_clock::auto_advance};
  int attempts = 0;
  resilient r{[&](std::stop_token) -> int {
                if (++attempts == 1) throw std::runtime_error{"first"};
                clk.advance(20s);
                return 1;
              },
              timeout{10s}, retry{{.max_retries = 5, .base_delay = 1s}}};
  r.with_clock(clk);
  auto result = r.try_call();
  CHECK(attempts == 2);
  REQUIRE(result.has_rejection());
  CHECK(result.rejection().is(timeout_kind));
  CHECK(timeout_kind.limit(result.rejection()) == 10s);
}

TEST_CASE("a hand-made pipeline without a call description times out cooperatively", "[timeout]") {
  manual_clock clk;
  pipeline p{timeout{{.limit = 2s, .mode = timeout_mode::detached}}};
  const clock_ref clock{clk};
  call_context ctx{clock};
  auto inner = [&](call_context& c) {
    clk.advance(3s);
    return outcome<int>{c.stop.stop_requested() ? 1 : 0};
  };
  auto result = p.run(ctx, inner);
  CHECK(result.has_rejection());
}

TEST_CASE("cooperative on the real clock: the timer fires, also after a longer timer was cancelled", "[timeout]") {
  resilient quick{[](std::stop_token) { return 0; }, timeout{1h}};
  resilient hangs{wait_for_stop, timeout{1ms}};
  for (int i = 0; i < 3; ++i) {
    CHECK(quick() == 0);  // arms and cancels a 1 h timer, likely at the address the next one reuses
    auto result = hangs.try_call();
    REQUIRE(result.has_rejection());
    CHECK(result.rejection().is(timeout_kind));
  }
}

TEST_CASE("cooperative on the real clock: a short timeout fires while a long one is armed on another thread",
          "[timeout]") {
  // The timer thread sleeps until the long deadline; arming the short one must wake it.
  std::latch release{1};
  std::atomic<bool> long_started{false};
  resilient long_call{[&](std::stop_token st) {
                        long_started = true;
                        release.wait();
                        return st.stop_requested() ? -1 : 1;
                      },
                      timeout{1h}};
  std::jthread other{[&] { CHECK(long_call() == 1); }};
  spin_until([&] { return long_started.load(); });
  resilient hangs{wait_for_stop, timeout{1ms}};
  auto result = hangs.try_call();
  REQUIRE(result.has_rejection());
  CHECK(result.rejection().is(timeout_kind));
  release.count_down();
}

TEST_CASE("cooperative on the real clock: the caller's stop request reaches the callable; the value stands",
          "[timeout]") {
  resilient r{wait_for_stop, timeout{1h}};
  std::stop_source caller;
  std::jthread canceller{[&] { caller.request_stop(); }};
  CHECK(r.call_with({.stop = caller.get_token()}) == 1);  // stopped by the caller, not timed out
}

TEST_CASE("cooperative on the real clock: nested timeouts, deeper than one block of slots", "[timeout]") {
  // Level 0 hangs until its 1 ms timeout stops it; levels 1..12 have an hour
  // each and report what the level inside them returned.
  using level = resilient<std::function<int(std::stop_token)>, timeout>;
  std::vector<std::unique_ptr<level>> levels;
  levels.push_back(std::make_unique<level>(std::function<int(std::stop_token)>{wait_for_stop}, timeout{1ms}));
  for (int i = 1; i <= 12; ++i) {
    const level* inner = levels.back().get();
    levels.push_back(std::make_unique<level>(std::function<int(std::stop_token)>{[inner](std::stop_token st) {
                                               auto o = inner->try_call();
                                               if (st.stop_requested()) return -1000;  // an outer timer fired: wrong
                                               if (o.has_rejection()) return o.rejection().is(timeout_kind) ? 1 : -1;
                                               return 10 + o.value();
                                             }},
                                             timeout{1h}));
  }
  for (int round = 0; round < 3; ++round) {  // the slots are reused, round after round
    CHECK(levels.back()->try_call().value() == 10 * 11 + 1);
    CHECK(levels[1]->try_call().value() == 1);
  }
}

TEST_CASE("cooperative on the real clock: a timer racing the call's end never fires into a finished call",
          "[timeout]") {
  // The limit is about as long as the call, so the timer fires before, during
  // or after the call returns. Only the timer stops the token, and the
  // outcome is timeout_error exactly when it fired: a call that saw its token
  // stopped never returns its value.
#ifdef RESILIENCE_TEST_SANITIZED
  constexpr int rounds = 300;
#else
  constexpr int rounds = 3000;
#endif
  std::atomic<bool> saw_stop{false};
  resilient racy{[&](std::stop_token st, int spins) {
                   for (int i = 0; i < spins && !st.stop_requested(); ++i) std::this_thread::yield();
                   saw_stop = st.stop_requested();
                   return spins;
                 },
                 timeout{20us}};
  int timed_out = 0;
  int returned = 0;
  for (int i = 0; i < rounds; ++i) {
    saw_stop = false;
    auto o = racy.try_call(i % 40);
    if (o.has_value()) {
      ++returned;
      CHECK_FALSE(saw_stop.load());
      CHECK(o.value() == i % 40);
    } else {
      ++timed_out;
      REQUIRE(o.has_rejection());
      CHECK(o.rejection().is(timeout_kind));
    }
  }
  CHECK(timed_out + returned == rounds);
}

TEST_CASE("cooperative on the real clock: calls on many threads, each timer stops only its own call", "[timeout]") {
#ifdef RESILIENCE_TEST_SANITIZED
  constexpr int calls = 200;
#else
  constexpr int calls = 2000;
#endif
  resilient fast{[](std::stop_token st, int x) { return st.stop_requested() ? -1 : x; }, timeout{1h}};
  resilient hangs{wait_for_stop, timeout{200us}};
  std::atomic<int> wrong{0};
  std::atomic<int> timeouts{0};
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&] {
        for (int i = 0; i < calls; ++i) {
          if (fast(i) != i) ++wrong;
          if (i % 100 == 0) {
            auto o = hangs.try_call();
            if (o.has_rejection() && o.rejection().is(timeout_kind)) ++timeouts;
          }
        }
      });
  }
  CHECK(wrong.load() == 0);
  CHECK(timeouts.load() == 4 * (calls / 100));
}

TEST_CASE("cooperative on the real clock: timeouts fire while a clock callback blocks its timer thread", "[timeout]") {
  // An async timeout's continuation (a fallback function, say) runs on the
  // clock's call_at thread and may block; cooperative timeouts have a thread
  // of their own and keep firing.
  clock_ref real;
  std::latch release{1};
  std::atomic<bool> blocking{false};
  real.call_at(real.now(), [&] {
    blocking = true;
    release.wait();
  });
  spin_until([&] { return blocking.load(); });
  resilient hangs{wait_for_stop, timeout{1ms}};
  auto result = hangs.try_call();
  REQUIRE(result.has_rejection());
  CHECK(result.rejection().is(timeout_kind));
  // And a call_at timer armed during a cooperative timeout fires once that thread is free.
  release.count_down();
  std::stop_source fired;
  resilient long_call{[&](std::stop_token st) {
                        real.call_at(real.now() + 1ms, [&] { fired.request_stop(); });
                        CHECK_FALSE(real.sleep_until(real.now() + 1h, fired.get_token()));
                        return st.stop_requested() ? -1 : 1;
                      },
                      timeout{1h}};
  CHECK(long_call() == 1);
}

TEST_CASE("real clock: one timer service plans for call_at timers and cooperative timeouts together", "[timeout]") {
  // The service sleeps until the earliest deadline of either kind: a later
  // call_at timer must not hide an earlier cooperative timeout (the test
  // above checks the other way round).
  clock_ref real;
  const auto far = real.call_at(real.now() + 1h, [] {});
  resilient hangs{wait_for_stop, timeout{1ms}};
  auto result = hangs.try_call();
  REQUIRE(result.has_rejection());
  CHECK(result.rejection().is(timeout_kind));
  CHECK(real.cancel(far));
}

TEST_CASE("real clock: a due call_at timer queued behind a blocking callback can still be cancelled", "[timeout]") {
  clock_ref real;
  std::latch release{1};
  std::atomic<bool> blocking{false};
  real.call_at(real.now(), [&] {
    blocking = true;
    release.wait();
  });
  spin_until([&] { return blocking.load(); });
  std::atomic<bool> ran{false};
  const auto id = real.call_at(real.now(), [&] { ran = true; });
  // Due, perhaps already handed to the callback thread, but not started.
  CHECK(real.cancel(id));
  std::stop_source after;
  real.call_at(real.now(), [&] { after.request_stop(); });
  release.count_down();
  CHECK_FALSE(real.sleep_until(real.now() + 1h, after.get_token()));
  CHECK_FALSE(ran);
}

TEST_CASE("detached on the real clock: a quick call returns its value, a hung one times out and finishes later",
          "[timeout]") {
  thread_pool pool{1};
  std::latch release{1};
  auto finished = std::make_shared<std::atomic<int>>(0);
  auto work = [finished, &release](int x) {
    if (x < 0) release.wait();  // hangs until the test lets it go
    ++*finished;
    return x * 2;
  };
  resilient quick{work, timeout{{.limit = 1h, .mode = timeout_mode::detached}}};
  resilient hung{work, timeout{{.limit = 1ms, .mode = timeout_mode::detached}}};
  quick.with_executor(pool);
  hung.with_executor(pool);
  for (int i = 0; i < 50; ++i) CHECK(quick(i) == 2 * i);
  auto o = hung.try_call(-1);
  REQUIRE(o.has_rejection());
  CHECK(o.rejection().is(timeout_kind));
  CHECK(finished->load() == 50);
  release.count_down();
  pool.shutdown();  // the abandoned call ends, its result dropped
  CHECK(finished->load() == 51);
}

TEST_CASE("detached on the real clock: the caller's stop request ends the wait with cancelled", "[timeout]") {
  thread_pool pool{1};
  std::latch release{1};
  resilient r{[&release] {
                release.wait();
                return 1;
              },
              timeout{{.limit = 1h, .mode = timeout_mode::detached}}};
  r.with_executor(pool);
  std::stop_source caller;
  std::jthread canceller{[&] { caller.request_stop(); }};
  auto o = r.try_call_with({.stop = caller.get_token()});
  REQUIRE(o.has_rejection());
  CHECK(o.rejection().is(cancelled_kind));
  release.count_down();
  pool.shutdown();
}
