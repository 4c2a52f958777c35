#include <resilience/bulkhead.hpp>
#include <resilience/resilient.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

using namespace resilience;
using namespace std::chrono_literals;

#include "support/sanitizers.hpp"
#ifdef RESILIENCE_TEST_TSAN
constexpr int stress_calls = 5'000;
#else
constexpr int stress_calls = 50'000;
#endif

namespace {
int generate_report() { return 7; }
}  // namespace

TEST_CASE("permits: at most max_concurrent_calls at once", "[bulkhead]") {
  bulkhead reports{{.name = "reports", .max_concurrent_calls = 2}};
  CHECK(reports.options().max_wait == 0s);
  auto a = reports.try_acquire();
  auto b = reports.try_acquire();
  CHECK(a);
  CHECK(b);
  CHECK(reports.stats().in_flight == 2);
  auto c = reports.try_acquire();
  CHECK_FALSE(c);
  CHECK(reports.stats().rejected == 1);
  a.release();
  CHECK(reports.stats().in_flight == 1);
  c = reports.try_acquire();
  CHECK(c);
  {
    auto moved = std::move(c);
    CHECK_FALSE(c);
    CHECK(reports.stats().in_flight == 2);
  }
  CHECK(reports.stats().in_flight == 1);
  CHECK_THROWS_AS(std::invoke([&] {
                    auto d = reports.enter();
                    auto e = reports.enter();
                  }),
                  bulkhead_full_error);
  CHECK(reports.stats().in_flight == 1);
}

TEST_CASE("as a policy: rejects with bulkhead_full, naming the bulkhead, without allocating a message", "[bulkhead]") {
  bulkhead reports{{.name = "reports", .max_concurrent_calls = 1}};
  resilient wrapped{generate_report, reports};
  CHECK(wrapped() == 7);
  auto held = reports.try_acquire();
  const auto r = wrapped.try_call();
  REQUIRE(r.has_rejection());
  CHECK(r.rejection().is(bulkhead_full_kind));
  CHECK(r.rejection().source.data() == reports.name().data());
  try {
    wrapped();
    FAIL("a full bulkhead let a call through");
  } catch (const bulkhead_full_error& e) {
    CHECK(e.source() == "reports");
  }
  held.release();
  CHECK(wrapped() == 7);
  CHECK(reports.stats().in_flight == 0);
  CHECK(reports.stats().rejected == 2);
}

TEST_CASE("the slot is freed when the call throws; the exception passes unchanged", "[bulkhead]") {
  bulkhead b{{.max_concurrent_calls = 1}};
  resilient wrapped{[]() -> int { throw std::out_of_range{"no such scope"}; }, b};
  CHECK_THROWS_AS(wrapped(), std::out_of_range);
  CHECK(b.stats().in_flight == 0);
  CHECK(b.try_acquire());
}

TEST_CASE("a waiter gets the slot a release frees, before max_wait", "[bulkhead]") {
  manual_clock clk;
  bulkhead b{{.clock = clk, .max_concurrent_calls = 1, .max_wait = 1s}};
  auto held = b.try_acquire();
  auto waiter = std::async(std::launch::async, [&] { return static_cast<bool>(b.acquire()); });
  clk.wait_for_sleepers(1);
  CHECK(b.stats().waiting == 1);
  held.release();
  CHECK(waiter.get());
  CHECK(clk.now() - time_point{1h} == 0s);  // no virtual time passed
  CHECK(b.stats().rejected == 0);
  CHECK(b.stats().in_flight == 0);
}

TEST_CASE("a waiter is rejected once max_wait passes on the clock", "[bulkhead]") {
  manual_clock clk;
  bulkhead b{{.name = "llm", .clock = clk, .max_concurrent_calls = 1, .max_wait = 2s}};
  resilient infer{generate_report, b};
  std::vector<event> seen;
  b.events().subscribe([&](const event& e) { seen.push_back(e); });
  auto held = b.try_acquire();
  auto waiter = std::async(std::launch::async, [&] { return infer.try_call(); });
  clk.wait_for_sleepers(1);
  clk.advance(1999ms);
  CHECK(b.stats().waiting == 1);
  clk.advance(1ms);
  const auto r = waiter.get();
  REQUIRE(r.has_rejection());
  CHECK(r.rejection().is(bulkhead_full_kind));
  CHECK(b.stats().rejected == 1);
  REQUIRE(seen.size() == 1);
  REQUIRE(seen[0].is(bulkhead_rejected_event));
  CHECK(seen[0].source() == "llm");
  CHECK(seen[0].get<std::size_t>("max_concurrent_calls") == 1);
}

TEST_CASE("waiting stops at the call's deadline and on its stop_token", "[bulkhead]") {
  manual_clock clk;
  bulkhead b{{.clock = clk, .max_concurrent_calls = 1, .max_wait = 10s}};
  resilient infer{generate_report, b};
  auto held = b.try_acquire();
  SECTION("deadline") {
    auto waiter = std::async(std::launch::async, [&] { return infer.try_call_with({.deadline = clk.now() + 3s}); });
    clk.wait_for_sleepers(1);
    clk.advance(3s);
    const auto r = waiter.get();
    REQUIRE(r.has_rejection());
    CHECK(r.rejection().is(bulkhead_full_kind));
  }
  SECTION("stop_token") {
    std::stop_source stop;
    auto waiter = std::async(std::launch::async, [&] { return infer.try_call_with({.stop = stop.get_token()}); });
    clk.wait_for_sleepers(1);
    stop.request_stop();
    const auto r = waiter.get();
    REQUIRE(r.has_rejection());
    CHECK(r.rejection().is(cancelled_kind));
    CHECK_THROWS_AS(b.enter(stop.get_token()), cancelled_error);
  }
  CHECK(b.stats().waiting == 0);
}

TEST_CASE("bad options throw invalid_argument naming the field", "[bulkhead]") {
  CHECK_THROWS_WITH(bulkhead({.max_concurrent_calls = 0}), Catch::Matchers::Contains("max_concurrent_calls"));
  CHECK_THROWS_WITH(bulkhead({.max_wait = -1s}), Catch::Matchers::Contains("max_wait"));
  if constexpr (sizeof(std::size_t) > 4) {  // the count of calls in flight is 32 bits wide
    CHECK_NOTHROW(bulkhead({.max_concurrent_calls = 0xffffffffu}));
    CHECK_THROWS_WITH(bulkhead({.max_concurrent_calls = std::size_t{0xffffffffu} + 1}),
                      Catch::Matchers::Contains("max_concurrent_calls"));
  }
}

TEST_CASE("calls in flight and callers waiting are counted apart, in one word", "[bulkhead]") {
  manual_clock clk;
  bulkhead b{{.clock = clk, .max_concurrent_calls = 2, .max_wait = 1h}};
  auto a = b.try_acquire();
  auto c = b.try_acquire();
  auto first = std::async(std::launch::async, [&] { return b.acquire(); });
  auto second = std::async(std::launch::async, [&] { return b.acquire(); });
  clk.wait_for_sleepers(2);
  CHECK(b.stats().in_flight == 2);
  CHECK(b.stats().waiting == 2);
  CHECK_FALSE(b.try_acquire());  // waiters do not count as slots taken, nor free ones
  a.release();
  c.release();
  auto p = first.get();
  auto q = second.get();
  CHECK(p);
  CHECK(q);
  CHECK(b.stats().in_flight == 2);
  CHECK(b.stats().waiting == 0);
  p.release();
  q.release();
  CHECK(b.stats().in_flight == 0);
  CHECK(b.stats().rejected == 1);
  CHECK(clk.now() - time_point{1h} == 0s);
}

TEST_CASE("stress: 8 threads never run more than the limit at once", "[bulkhead][stress]") {
  constexpr int threads = 8;
  constexpr std::size_t limit = 3;
  const bool waits = GENERATE(false, true);
  // With waiting on a clock that never moves, a call is admitted only by a
  // release: a lost wake-up would hang the test, and no call is rejected.
  manual_clock clk;
  bulkhead b{{.clock = clk, .max_concurrent_calls = limit, .max_wait = waits ? 1h : 0s}};
  std::atomic<int> inside{0}, peak{0};
  std::atomic<std::uint64_t> ran{0}, refused{0};
  auto work = [&] {
    const int now = ++inside;
    int p = peak.load();
    while (now > p && !peak.compare_exchange_weak(p, now)) {
    }
    std::this_thread::yield();  // let the other threads pile up at the door
    --inside;
    return 1;
  };
  resilient guarded{work, b};
  const int calls = waits ? stress_calls / 10 : stress_calls;  // parking a thread is the slow path
  {
    std::vector<std::jthread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&] {
        for (int i = 0; i < calls; ++i) {
          if (guarded.try_call().has_value()) ++ran;
          else ++refused;
        }
      });
    }
  }
  INFO("peak " << peak.load() << " refused " << refused.load());
  CHECK(peak.load() <= static_cast<int>(limit));
  CHECK(peak.load() >= 1);
  CHECK(ran + refused == std::uint64_t{threads} * static_cast<std::uint64_t>(calls));
  CHECK(b.stats().rejected == refused.load());
  CHECK(b.stats().in_flight == 0);
  CHECK(b.stats().waiting == 0);
  if (waits) CHECK(refused.load() == 0);
  else CHECK(refused.load() > 0);
}

TEST_CASE("stress: permits taken, waited for, timed out and cancelled at once; none leaks", "[bulkhead][stress]") {
  constexpr int threads = 6;
  constexpr std::size_t limit = 2;
  manual_clock clk;
  bulkhead b{{.clock = clk, .max_concurrent_calls = limit, .max_wait = 1ms}};
  std::atomic<int> inside{0}, peak{0}, busy{threads};
  std::atomic<std::uint64_t> admitted{0}, empty{0};
#ifdef RESILIENCE_TEST_TSAN
  constexpr int rounds = 200;
#else
  constexpr int rounds = 1'000;  // a wait parks the thread until a release or the clock ends it: the slow path
#endif
  {
    std::vector<std::jthread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        for (int i = 0; i < rounds; ++i) {
          std::stop_source stop;
          if ((i + t) % 5 == 0) stop.request_stop();  // cancelled before (or while) it waits
          // Try at once, or wait up to max_wait: a release admits it, or the clock ends the wait.
          auto permit = (i + t) % 3 == 0 ? b.try_acquire() : b.acquire(stop.get_token());
          if (!permit) {
            ++empty;
            continue;
          }
          ++admitted;
          const int now = ++inside;
          int p = peak.load();
          while (now > p && !peak.compare_exchange_weak(p, now)) {
          }
          std::this_thread::yield();
          --inside;
          if (i % 2 == 0) permit.release();  // early, or at scope end
        }
        --busy;
      });
    }
    workers.emplace_back([&] {
      while (busy.load() > 0) {
        clk.advance(250us);  // waits time out in virtual time
        std::this_thread::yield();
      }
    });
  }
  INFO("peak " << peak.load() << " admitted " << admitted.load() << " empty " << empty.load());
  CHECK(peak.load() <= static_cast<int>(limit));
  CHECK(admitted + empty == std::uint64_t{threads} * static_cast<std::uint64_t>(rounds));
  CHECK(admitted.load() > 0);
  CHECK(b.stats().rejected <= empty.load());  // refusals are counted; cancellations are not
  CHECK(b.stats().in_flight == 0);            // every slot given back
  CHECK(b.stats().waiting == 0);
  CHECK(b.try_acquire());
}
