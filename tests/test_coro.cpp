#include <resilience/circuit_breaker.hpp>
#include <resilience/coro.hpp>
#include <resilience/executor.hpp>
#include <resilience/fallback.hpp>
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>
#include <resilience/timeout.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "support/coro.hpp"
#include "support/executors.hpp"
#include "support/spin.hpp"

using namespace resilience;
using namespace support;
using namespace std::chrono_literals;

namespace {

struct erp_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Awaits r.co_call(args...) into `got`, or its exception into `error`.
template <class R, class T, class... A>
spawned call_into(const R& r, std::optional<T>& got, std::exception_ptr& error, call_options options, A... args) {
  try {
    got.emplace(co_await r.co_call_with(options, args...));
  } catch (...) {
    error = std::current_exception();
  }
}

template <class R, class O, class... A>
spawned try_call_into(const R& r, std::optional<O>& got, A... args) {
  got.emplace(co_await r.co_try_call(args...));
}

// A user policy with only a sync form: under co_call it runs on the executor.
struct sync_only {
  std::shared_ptr<std::thread::id> ran_on = std::make_shared<std::thread::id>();
  template <class Next>
  auto execute(call_context& ctx, Next&& next) const {
    *ran_on = std::this_thread::get_id();
    return next(ctx);
  }
};

}  // namespace

TEST_CASE("co_call through policies that never wait runs inline, without suspending", "[coro]") {
  resilient plain{[](int x) { return x * 2; }};
  std::optional<int> got;
  std::exception_ptr error;
  call_into(plain, got, error, {}, 21);
  REQUIRE(got);  // the coroutine ran to its end inside the call above
  CHECK(*got == 42);

  circuit_breaker breaker{{.fail_max = 5}};
  resilient guarded{[](const std::string& s) { return s.size(); }, fallback{default_value<std::size_t>{0}}, breaker};
  std::optional<std::size_t> size;
  call_into(guarded, size, error, {}, std::string{"scope 3"});
  REQUIRE(size);
  CHECK(*size == 7);
}

TEST_CASE("co_call preserves the user's exception object, inline and async", "[coro]") {
  auto boom = std::make_shared<erp_error>("erp down");
  resilient inline_r{[boom](int) -> int { throw boom; }};
  std::optional<int> got;
  std::exception_ptr error;
  call_into(inline_r, got, error, {}, 1);
  REQUIRE(error);
  try {
    std::rethrow_exception(error);
  } catch (const std::shared_ptr<erp_error>& e) {
    CHECK(e == boom);
  }

  manual_executor ex;
  resilient async_r{[boom](int) -> int { throw boom; }, retry{{.max_retries = 0}}};
  async_r.with_executor(ex);
  error = nullptr;
  call_into(async_r, got, error, {}, 1);
  CHECK(!error);  // suspended: nothing ran yet
  ex.run_all();
  REQUIRE(error);
  try {
    std::rethrow_exception(error);
  } catch (const std::shared_ptr<erp_error>& e) {
    CHECK(e == boom);
  }
  CHECK(!got);
}

TEST_CASE("co_call's retry waits are timers at the exact backoff delays", "[coro]") {
  manual_clock clk;
  manual_executor ex;
  int attempts = 0;
  resilient r{[&attempts](int x) {
                if (++attempts < 3) throw erp_error{"busy"};
                return x;
              },
              retry{{.max_retries = 3, .base_delay = 1s}}};
  r.with_clock(clk).with_executor(ex);
  const auto t0 = clk.now();
  std::optional<int> got;
  std::exception_ptr error;
  call_into(r, got, error, {}, 7);
  CHECK(attempts == 0);
  ex.run_all();
  CHECK(attempts == 1);
  REQUIRE(clk.pending_timers() == 1);
  CHECK(*clk.next_deadline() == t0 + 1s);
  CHECK(ex.pending() == 0);  // the wait holds no executor thread
  clk.advance(1s);
  ex.run_all();
  CHECK(attempts == 2);
  REQUIRE(clk.pending_timers() == 1);
  CHECK(*clk.next_deadline() == t0 + 3s);  // 1 s, then 2 s
  clk.advance(1999ms);
  ex.run_all();
  CHECK(attempts == 2);
  clk.advance(1ms);
  ex.run_all();
  CHECK(attempts == 3);
  REQUIRE(got);
  CHECK(*got == 7);
  CHECK(!error);
}

TEST_CASE("co_call's timeout fires at the deadline; the callable sees the stop request", "[coro]") {
  manual_clock clk;
  manual_executor ex;
  std::atomic<bool> started{false};
  std::atomic<bool> saw_stop{false};
  time_point stopped_at{};
  resilient r{[&](std::stop_token st) {
                started = true;
                spin_until([&] { return st.stop_requested(); });
                stopped_at = clk.now();
                saw_stop = true;
                return 1;
              },
              timeout{1s}};
  r.with_clock(clk).with_executor(ex);
  const auto t0 = clk.now();
  std::optional<int> got;
  std::exception_ptr error;
  call_into(r, got, error, {});
  std::jthread worker{[&] { ex.run_one(); }};  // the callable blocks this thread until stopped
  spin_until([&] { return started.load(); });
  clk.advance(999ms);
  CHECK(!saw_stop);
  clk.advance(1ms);  // the timer fires here, on this thread, and posts the coroutine's resumption
  worker.join();
  CHECK(saw_stop);
  CHECK(stopped_at == t0 + 1s);
  CHECK(!error);
  ex.run_all();
  REQUIRE(error);
  CHECK_THROWS_AS(std::rethrow_exception(error), timeout_error);
  CHECK(!got);
}

TEST_CASE("co_call is cancelled mid-backoff by the caller's stop_token", "[coro]") {
  manual_clock clk;
  manual_executor ex;
  int attempts = 0;
  resilient r{[&attempts]() -> int {
                ++attempts;
                throw erp_error{"down"};
              },
              retry{{.max_retries = 5, .base_delay = 10s}}};
  r.with_clock(clk).with_executor(ex);
  std::stop_source stop;
  std::optional<int> got;
  std::exception_ptr error;
  const auto t0 = clk.now();
  call_into(r, got, error, {.stop = stop.get_token()});
  ex.run_all();
  REQUIRE(clk.pending_timers() == 1);
  stop.request_stop();
  CHECK(clk.pending_timers() == 0);  // the wait's timer is cancelled
  ex.run_all();
  REQUIRE(error);
  CHECK_THROWS_AS(std::rethrow_exception(error), erp_error);  // the last failure stands
  CHECK(attempts == 1);
  CHECK(clk.now() == t0);
}

TEST_CASE("co_try_call returns the outcome and never throws", "[coro]") {
  manual_executor ex;
  resilient r{[]() -> int { throw erp_error{"down"}; }, retry{{.max_retries = 0}}};
  r.with_executor(ex);
  std::optional<outcome<int>> got;
  try_call_into(r, got);
  ex.run_all();
  REQUIRE(got);
  CHECK(got->has_exception());

  resilient fine{[](int x) { return x + 1; }};
  std::optional<outcome<int>> one;
  try_call_into(fine, one, 1);
  REQUIRE(one);
  CHECK(**one == 2);
}

TEST_CASE("co_call runs a sync-only user policy on the executor", "[coro]") {
  thread_pool pool{1};
  sync_only p;
  resilient r{[](int x) { return x; }, p};
  r.with_executor(pool);
  std::optional<int> got;
  std::exception_ptr error;
  std::atomic<bool> done{false};
  [](const auto& r, std::optional<int>& got, std::atomic<bool>& done) -> spawned {
    got = co_await r.co_call(5);
    done = true;
  }(r, got, done);
  spin_until([&] { return done.load(); });
  CHECK(*got == 5);
  CHECK(*p.ran_on != std::this_thread::get_id());
  CHECK(*p.ran_on != std::thread::id{});
}

TEST_CASE("co_call that ends before await_suspend returns goes on at once (symmetric transfer)", "[coro]") {
  counting_executor ex;  // runs each task inside post
  resilient r{[](int x) { return x + 1; }, retry{}};
  r.with_executor(executor_ref::adapt(ex));
  std::optional<int> got;
  std::exception_ptr error;
  for (int i = 0; i < 1000; ++i) {  // a resumption nested in the call would grow the stack each time
    got.reset();
    call_into(r, got, error, {}, i);
    REQUIRE(got);
    CHECK(*got == i + 1);
  }
}

TEST_CASE("co_call whose executor refuses or drops the call resumes with the failure", "[coro]") {
  resilient refused{[] { return 1; }, retry{}};
  refused.with_executor(executor_ref::adapt(refusing_executor{}));
  std::optional<int> got;
  std::exception_ptr error;
  call_into(refused, got, error, {});
  REQUIRE(error);
  CHECK_THROWS_AS(std::rethrow_exception(error), std::runtime_error);

  error = nullptr;
  {
    manual_executor ex;
    resilient dropped{[] { return 1; }, retry{}};
    dropped.with_executor(ex);
    call_into(dropped, got, error, {});
    CHECK(!error);
  }  // the executor drops the queued call
  REQUIRE(error);
  CHECK_THROWS_AS(std::rethrow_exception(error), std::future_error);
}

TEST_CASE("10,000 coroutine calls in backoff at once hold no thread", "[coro]") {
  manual_clock clk;
  thread_pool pool{2};
  constexpr int n = 10'000;
  auto tries = std::make_shared<std::vector<std::atomic<int>>>(n);
  resilient r{[tries](int i) {
                if ((*tries)[static_cast<std::size_t>(i)]++ == 0) throw erp_error{"busy"};
                return i;
              },
              retry{{.max_retries = 1, .base_delay = 1s}}};
  r.with_clock(clk).with_executor(pool);
  std::atomic<int> done{0};
  std::atomic<long> sum{0};
  for (int i = 0; i < n; ++i) {
    [](const auto& r, int i, std::atomic<int>& done, std::atomic<long>& sum) -> spawned {
      sum += co_await r.co_call(i);
      ++done;
    }(r, i, done, sum);
  }
  // Every call is waiting on a timer and the two threads are free.
  spin_until([&] { return clk.pending_timers() == static_cast<std::size_t>(n); });
  CHECK(done == 0);
  CHECK(pool.queued() == 0);
  clk.advance(1s);
  spin_until([&] { return done.load() == n; });
  CHECK(sum == static_cast<long>(n) * (n - 1) / 2);
}

TEST_CASE("the caller's stop_token reaches a callable inside an async timeout", "[coro]") {
  manual_clock clk;
  manual_executor ex;
  std::atomic<bool> started{false};
  resilient r{[&](std::stop_token st) {
                started = true;
                spin_until([&] { return st.stop_requested(); });
                return -1;
              },
              timeout{1h}};
  r.with_clock(clk).with_executor(ex);
  std::stop_source stop;
  std::optional<int> got;
  std::exception_ptr error;
  call_into(r, got, error, {.stop = stop.get_token()});
  std::jthread worker{[&] { ex.run_one(); }};
  spin_until([&] { return started.load(); });
  stop.request_stop();
  worker.join();  // the callable saw the request and returned; the coroutine went on there
  REQUIRE(got);
  CHECK(*got == -1);
  CHECK(clk.pending_timers() == 0);  // the timeout's timer is gone
}
