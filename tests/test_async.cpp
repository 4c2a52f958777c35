#include <resilience/cache.hpp>
#include <resilience/executor.hpp>
#include <resilience/fallback.hpp>
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>
#include <resilience/timeout.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/clocks.hpp"
#include "support/executors.hpp"
#include "support/spin.hpp"

using namespace resilience;
using namespace support;
using namespace std::chrono_literals;

namespace {

struct erp_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
}  // namespace

TEST_CASE("async returns the value through a future, on the executor", "[async]") {
  manual_executor ex;
  resilient r{[](const std::string& s) { return s.size(); }, retry{}};
  r.with_executor(ex);
  auto f = r.async(std::string{"scope 3"});              // the argument is moved into the call
  CHECK(f.wait_for(0s) == std::future_status::timeout);  // nothing runs until the executor does
  ex.run_all();
  CHECK(f.get() == 7);
}

TEST_CASE("async delivers the user's exception object and rejections through the future", "[async]") {
  manual_executor ex;
  auto boom = std::make_shared<erp_error>("erp down");
  resilient r{[boom](int) -> int { throw boom; }};
  r.with_executor(ex);
  auto f = r.async(1);
  ex.run_all();
  try {
    f.get();
    FAIL("no exception");
  } catch (const std::shared_ptr<erp_error>& e) {
    CHECK(e == boom);
  }

  manual_clock clk;
  bool asked_to_stop = false;
  resilient slow{[&](std::stop_token st) {
                   clk.advance(3s);  // the timeout's timer fires in here, on this thread
                   asked_to_stop = st.stop_requested();
                   return 1;  // late: dropped
                 },
                 timeout{2s}};
  slow.with_clock(clk).with_executor(ex);
  auto g = slow.async();
  ex.run_all();
  CHECK(asked_to_stop);
  CHECK_THROWS_AS(g.get(), timeout_error);
}

TEST_CASE("async void calls and pipeline::async", "[async]") {
  manual_executor ex;
  int ran = 0;
  resilient r{[&] { ++ran; }, fallback{raise}};
  r.with_executor(ex);
  auto f = r.async();
  ex.run_all();
  f.get();
  CHECK(ran == 1);

  pipeline p{retry{{.max_retries = 0}}};
  p.with_executor(ex);
  auto g = p.async([](int a, int b) { return a * b; }, 6, 7);
  ex.run_all();
  CHECK(g.get() == 42);
}

TEST_CASE("async retries wait on timers: no thread is held during a backoff", "[async]") {
  manual_clock clk;
  manual_executor ex;
  int attempts = 0;
  resilient r{[&attempts](int) {
                if (++attempts < 3) throw erp_error{"busy"};
                return 5;
              },
              retry{{.max_retries = 3, .base_delay = 1s}}};
  r.with_clock(clk).with_executor(ex);
  auto f = r.async(0);
  ex.run_all();
  CHECK(attempts == 1);
  CHECK(clk.pending_timers() == 1);  // the wait is a timer, and the executor is idle
  CHECK(ex.pending() == 0);
  clk.advance(999ms);
  CHECK(ex.pending() == 0);
  clk.advance(1ms);
  ex.run_all();
  CHECK(attempts == 2);
  clk.advance(2s);
  ex.run_all();
  CHECK(f.get() == 5);
  CHECK(attempts == 3);
}

TEST_CASE("1,000 async calls failing twice finish on a 2-thread pool after 3 s of virtual time", "[async]") {
  manual_clock clk;
  std::atomic<int> running{0}, max_running{0}, calls{0};
  auto note_running = [&] {
    const int now = running.fetch_add(1) + 1;
    int seen = max_running.load();
    while (now > seen && !max_running.compare_exchange_weak(seen, now)) {
    }
  };
  constexpr int n = 1000;
  std::vector<std::future<int>> futures;
  {
    thread_pool pool{2};
    resilient r{[&, failures = 0](int i) mutable {  // each async call owns its copy of `failures`
                  note_running();
                  calls.fetch_add(1);
                  const bool fail = failures++ < 2;
                  running.fetch_sub(1);
                  if (fail) throw erp_error{"erp busy"};
                  return i;
                },
                retry{{.max_retries = 3, .base_delay = 1s}}};
    r.with_clock(clk).with_executor(pool);
    futures.reserve(n);
    for (int i = 0; i < n; ++i) futures.push_back(r.async(i));

    spin_until([&] { return clk.pending_timers() == n; });  // every call failed once and waits 1 s
    clk.advance(1s);
    spin_until([&] { return clk.pending_timers() == n; });  // failed twice, waiting 2 s
    clk.advance(2s);
    for (int i = 0; i < n; ++i) CHECK(futures[static_cast<std::size_t>(i)].get() == i);
  }
  CHECK(calls.load() == 3 * n);
  CHECK(max_running.load() <= 2);
  CHECK(clk.pending_timers() == 0);
}

TEST_CASE("async timeout: the future gets timeout_error at the deadline; the late result is dropped", "[async]") {
  manual_clock clk;
  thread_pool pool{1};
  std::atomic<bool> release{false}, finished{false};
  resilient r{[&](std::string activity) {
                spin_until([&] { return release.load(); });
                finished = true;
                return activity.size();
              },
              timeout{{.limit = 10s, .mode = timeout_mode::detached}}};
  r.with_clock(clk).with_executor(pool);
  auto f = r.async(std::string{"business travel"});
  spin_until([&] { return clk.pending_timers() == 1; });
  clk.advance(10s);
  CHECK_THROWS_AS(f.get(), timeout_error);  // while the callable still runs
  CHECK_FALSE(finished.load());
  release = true;
  pool.shutdown();
  CHECK(finished.load());
}

TEST_CASE("async retry, timeout: each attempt times out on a timer, then the retry succeeds", "[async]") {
  manual_clock clk;
  manual_executor ex;
  int attempts = 0;
  resilient r{[&](std::stop_token) {
                if (++attempts == 1) clk.advance(4s);  // hangs past its 3 s limit; the timer fires inside
                return attempts;
              },
              retry{{.max_retries = 2, .base_delay = 2s}}, timeout{3s}};
  r.with_clock(clk).with_executor(ex);
  const time_point start = clk.now();
  auto f = r.async();
  ex.run_all();  // attempt 1 times out at +3 s; the retry timer is set for +5 s
  CHECK(attempts == 1);
  CHECK(clk.pending_timers() == 1);
  CHECK(f.wait_for(0s) == std::future_status::timeout);
  clk.advance(1s);  // +5 s
  ex.run_all();     // attempt 2 runs in time
  CHECK(f.get() == 2);
  CHECK(clk.now() - start == 5s);
}

TEST_CASE("async fallback runs as a continuation and sees timeouts from inside", "[async]") {
  manual_clock clk;
  manual_executor ex;
  result_cache<std::string, double> c{{.clock = clk}};
  c.put("electricity", 0.25);
  std::vector<std::string> reasons;
  resilient r{[](std::stop_token, const std::string&) { return 1.0; },
              fallback{cached{c}, {.on_activated = [&](const fallback_info& i) { reasons.push_back(i.cause.what()); }}},
              timeout{5s}};
  r.with_clock(clk).with_executor(ex);
  auto f = r.async(std::string{"electricity"});
  ex.run_one();  // runs the call: the callable returns in time
  CHECK(f.get() == 1.0);
  resilient hangs{
      [&](std::stop_token, const std::string&) {
        clk.advance(6s);
        return 1.0;
      },
      fallback{cached{c}, {.on_activated = [&](const fallback_info& i) { reasons.push_back(i.cause.what()); }}},
      timeout{5s}};
  hangs.with_clock(clk).with_executor(ex);
  c.put("electricity", 0.25);
  f = hangs.async(std::string{"electricity"});
  ex.run_all();
  CHECK(f.get() == 0.25);
  REQUIRE(reasons.size() == 1);
  CHECK(reasons[0].find("timeout") != std::string::npos);

  auto none_fb = resilient{[](int) -> int { throw erp_error{"x"}; }, fallback{none}};
  none_fb.with_executor(ex);
  auto g = none_fb.async(1);
  ex.run_all();
  CHECK_FALSE(g.get().has_value());
}

TEST_CASE("destroying the executor with async calls in flight cancels them cleanly", "[async]") {
  manual_clock clk;
  std::future<int> waiting_on_timer, queued;
  {
    manual_executor ex;
    resilient r{[](int) -> int { throw erp_error{"down"}; }, retry{{.max_retries = 3, .base_delay = 1s}}};
    r.with_clock(clk).with_executor(ex);
    waiting_on_timer = r.async(1);
    ex.run_all();  // failed once, now waiting on a timer
    queued = r.async(2);
  }  // queued work is dropped
  CHECK_THROWS_AS(queued.get(), std::future_error);
  clk.advance(1s);  // the timer fires into a dead executor: dropped, not crashed
  CHECK_THROWS_AS(waiting_on_timer.get(), std::future_error);
}

TEST_CASE("async on the default pool with the real clock", "[async]") {
  resilient r{[](int x) { return x + 1; }, fallback{default_value{0}}, timeout{1h}};
  std::vector<std::future<int>> fs;
  for (int i = 0; i < 50; ++i) fs.push_back(r.async(i));
  for (int i = 0; i < 50; ++i) CHECK(fs[static_cast<std::size_t>(i)].get() == i + 1);
}

TEST_CASE("async retry: what the executor or the clock throws completes the future with it, once", "[async][hooks]") {
  const auto flaky = [attempts = std::make_shared<int>(0)] {
    if (++*attempts < 3) throw erp_error{"busy"};
    return 5;
  };
  {
    manual_clock clk;
    manual_executor ex;
    resilient r{flaky, retry{{.max_retries = 3, .base_delay = 1s}}};
    r.with_clock(clk).with_executor(executor_ref::adapt(refusing_nth{&ex, 2}));  // the retry's wake-up is refused
    auto f = r.async();
    ex.run_all();
    clk.advance(1s);  // the timer posts on the advancing thread; the refusal must not escape there
    REQUIRE(f.wait_for(0s) == std::future_status::ready);
    CHECK_THROWS_WITH(f.get(), "pool closed");
    CHECK(ex.run_all() == 0);
  }
  {
    manual_executor ex;
    resilient r{flaky, retry{{.max_retries = 3, .base_delay = 1s}}};
    r.with_clock(clock_ref{std::make_shared<no_timers_clock>()}).with_executor(ex);
    auto f = r.async();
    ex.run_all();
    REQUIRE(f.wait_for(0s) == std::future_status::ready);
    CHECK_THROWS_WITH(f.get(), "no timers");
  }
  {
    manual_executor ex;
    int calls = 0;
    resilient r{[&calls] {
                  ++calls;
                  throw erp_error{"busy"};
                  return 0;
                },
                retry{{.max_retries = 3, .base_delay = 1s, .on_retry = [](int, duration, const failure&) {
                         throw std::logic_error{"listener"};
                       }}}};
    r.with_executor(ex);
    auto f = r.async();
    ex.run_all();
    CHECK_THROWS_AS(f.get(), std::logic_error);
    CHECK(calls == 1);
  }
}

TEST_CASE("async retry on an auto-advancing manual_clock: the waits advance time", "[async][clock]") {
  // Issue #11, item 13: the waits were timers, which auto-advance never fired.
  manual_clock clk{manual_clock::auto_advance};
  manual_executor ex;
  int attempts = 0;
  resilient r{[&attempts] {
                if (++attempts < 3) throw erp_error{"busy"};
                return 5;
              },
              retry{{.max_retries = 3, .base_delay = 1s}}};
  r.with_clock(clk).with_executor(ex);
  const auto t0 = clk.now();
  auto f = r.async();
  // A deadline on the test: a bounded number of executor rounds, no real wait.
  for (int round = 0; round < 100 && f.wait_for(0s) != std::future_status::ready; ++round) ex.run_all();
  REQUIRE(f.wait_for(0s) == std::future_status::ready);
  CHECK(f.get() == 5);
  CHECK(attempts == 3);
  CHECK(clk.now() - t0 == 3s);  // 1 s + 2 s of backoff

  // Earlier timers fire on the way, in deadline order, each at its deadline.
  const auto t1 = clk.now();
  duration timer_saw{};
  clk.call_at(t1 + 500ms, [&] { timer_saw = clk.now() - t1; });
  attempts = 0;
  auto g = r.async();
  for (int round = 0; round < 100 && g.wait_for(0s) != std::future_status::ready; ++round) ex.run_all();
  REQUIRE(g.wait_for(0s) == std::future_status::ready);
  CHECK(g.get() == 5);
  CHECK(timer_saw == 500ms);
  CHECK(clk.now() - t1 == 3s);
}
