#include <resilience/executor.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <atomic>
#include <future>
#include <latch>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support/executors.hpp"
#include "support/sanitizers.hpp"
#include "support/spin.hpp"

using namespace resilience;
using namespace support;
using namespace std::chrono_literals;

TEST_CASE("manual_executor runs queued work only when told, first in first out", "[executor]") {
  manual_executor ex;
  std::vector<int> ran;
  ex.post([&] { ran.push_back(1); });
  ex.post([&] { ran.push_back(2); });
  CHECK(ran.empty());
  CHECK(ex.pending() == 2);
  CHECK(ex.run_one());
  CHECK(ran == std::vector<int>{1});
  ex.post([&] {
    ran.push_back(3);
    ex.post([&] { ran.push_back(4); });  // work posted by work runs in the same run_all
  });
  CHECK(ex.run_all() == 3);
  CHECK(ran == std::vector<int>{1, 2, 3, 4});
  CHECK_FALSE(ex.run_one());
}

TEST_CASE("manual_executor drops queued work when destroyed; a stale handle drops new work", "[executor]") {
  auto token = std::make_shared<int>(0);
  executor_ref handle;
  {
    manual_executor ex;
    handle = ex.ref();
    ex.post([token] {});
    CHECK(token.use_count() == 2);
  }
  CHECK(token.use_count() == 1);  // destroyed unrun, nothing leaked
  std::promise<void> p;
  auto f = p.get_future();
  handle.post([p = std::move(p)]() mutable { p.set_value(); });
  CHECK_THROWS_AS(f.get(), std::future_error);
}

TEST_CASE("thread_pool runs every task on its workers", "[executor]") {
  thread_pool pool{2};
  CHECK(pool.size() == 2);
  constexpr int n = 1000;
  std::atomic<int> count{0};
  std::latch done{n};
  for (int i = 0; i < n; ++i)
    pool.post([&] {
      count.fetch_add(1, std::memory_order_relaxed);
      done.count_down();
    });
  done.wait();
  CHECK(count.load() == n);
}

TEST_CASE("destroying a thread_pool finishes the work already queued", "[executor]") {
  std::atomic<int> count{0};
  {
    thread_pool pool{2};
    for (int i = 0; i < 500; ++i) pool.post([&] { count.fetch_add(1, std::memory_order_relaxed); });
  }
  CHECK(count.load() == 500);
}

TEST_CASE("thread_pool::shutdown(false) drops queued work; futures see broken_promise", "[executor]") {
  thread_pool pool{1};
  std::latch gate{1};
  std::atomic<bool> started{false};
  pool.post([&] {
    started = true;
    gate.wait();
  });
  std::promise<int> p;
  auto f = p.get_future();
  pool.post([p = std::move(p)]() mutable { p.set_value(1); });
  spin_until([&] { return started.load(); });
  CHECK(pool.queued() == 1);
  std::jthread stopper{[&] { pool.shutdown(false); }};
  spin_until([&] { return pool.queued() == 0; });  // dropped, not run: the only worker is busy
  gate.count_down();
  stopper.join();
  CHECK_THROWS_AS(f.get(), std::future_error);
  // A handle that outlives the shutdown drops work instead of touching a dead pool.
  std::atomic<bool> ran{false};
  pool.ref().post([&] { ran = true; });
  CHECK_FALSE(ran.load());
}

TEST_CASE("post_at posts to the executor when the clock reaches the time", "[executor]") {
  manual_clock clk;
  manual_executor ex;
  int ran = 0;
  post_at(clk, clk.now() + 2s, ex, [&] { ++ran; });
  clk.advance(1s);
  CHECK(ex.pending() == 0);
  clk.advance(1s);
  CHECK(ex.pending() == 1);  // the timer only posted it
  CHECK(ran == 0);
  ex.run_all();
  CHECK(ran == 1);
}

TEST_CASE("a user executor plugs in through executor_ref::adapt", "[executor]") {
  static_assert(executor<counting_executor>);
  counting_executor mine;
  auto ref = executor_ref::adapt(mine);
  int ran = 0;
  ref.post([&] { ++ran; });
  CHECK(ran == 1);
  CHECK(*mine.posted == 1);
}

TEST_CASE("an empty executor_ref posts to the default pool", "[executor]") {
  executor_ref ref;
  CHECK(ref.empty());
  std::promise<std::thread::id> p;
  auto f = p.get_future();
  ref.post([&p] { p.set_value(std::this_thread::get_id()); });
  CHECK(f.get() != std::this_thread::get_id());
  CHECK(default_thread_pool().size() >= 2);
}

TEST_CASE("unique_function holds move-only callables", "[executor]") {
  auto owned = std::make_unique<int>(7);
  task t{[p = std::move(owned)] { CHECK(*p == 7); }};
  task moved = std::move(t);
  CHECK(moved);
  moved();
}

TEST_CASE("unique_function keeps small callables inline and large ones on the heap, destroying each once",
          "[executor]") {
  auto token = std::make_shared<int>(0);
  {
    task small{[token] {}};                                             // fits inline
    task large{[token, pad = std::array<char, 256>{}] { (void)pad; }};  // does not
    CHECK(token.use_count() == 3);
    task a = std::move(small);
    task b = std::move(large);
    CHECK(token.use_count() == 3);  // moved, not copied
    CHECK_FALSE(small);
    CHECK_FALSE(large);
    a = std::move(b);  // destroys a's callable
    CHECK(token.use_count() == 2);
    a();
  }
  CHECK(token.use_count() == 1);

  // A callable whose move may throw goes to the heap, so moving the task never throws.
  struct throwing_move {
    std::shared_ptr<int> p;
    throwing_move(std::shared_ptr<int> q) : p{std::move(q)} {}
    throwing_move(throwing_move&& o) noexcept(false) : p{std::move(o.p)} {}
    void operator()() const { ++*p; }
  };
  STATIC_REQUIRE(std::is_nothrow_move_constructible_v<task>);
  task t{throwing_move{token}};
  task moved = std::move(t);
  moved();
  CHECK(*token == 1);

  detail::unique_function<int(std::unique_ptr<int>)> takes{[](std::unique_ptr<int> p) { return *p; }};
  CHECK(takes(std::make_unique<int>(42)) == 42);
}

TEST_CASE("thread_pool rejects a negative spin, naming it", "[executor]") {
  CHECK_THROWS_WITH(thread_pool(1, -1us), "thread_pool: spin must be >= 0");
}

TEST_CASE("thread_pool: one task at a time, each waited for, with and without spinning workers", "[executor]") {
  // Every task is posted to an idle pool: its worker is spinning, going to
  // sleep or asleep, whatever the timing; none may be lost.
#ifdef RESILIENCE_TEST_SANITIZED
  constexpr int n = 300;
#else
  constexpr int n = 3000;
#endif
  for (const duration spin :
       {duration::zero(), duration{std::chrono::microseconds{50}}, duration{std::chrono::seconds{1}}}) {
    thread_pool pool{2, spin};
    for (int i = 0; i < n; ++i) {
      std::promise<int> p;
      auto f = p.get_future();
      pool.post([&p, i] { p.set_value(i); });
      REQUIRE(f.get() == i);
    }
  }
}

TEST_CASE("thread_pool keeps first-in first-out order while its queue grows", "[executor]") {
  thread_pool pool{1};
  std::latch gate{1};
  pool.post([&] { gate.wait(); });
  std::vector<int> order;
  for (int i = 0; i < 1000; ++i) pool.post([&order, i] { order.push_back(i); });  // one worker: no race
  CHECK(pool.queued() >= 999);
  gate.count_down();
  pool.shutdown();
  REQUIRE(order.size() == 1000);
  for (int i = 0; i < 1000; ++i) CHECK(order[static_cast<std::size_t>(i)] == i);
}

TEST_CASE("thread_pool: posts from many threads while the pool shuts down are run or dropped, never lost in between",
          "[executor]") {
  auto ran = std::make_shared<std::atomic<int>>(0);
  auto destroyed = std::make_shared<std::atomic<int>>(0);
  struct counted {
    std::shared_ptr<std::atomic<int>> ran, destroyed;
    bool live = true;
    counted(std::shared_ptr<std::atomic<int>> r, std::shared_ptr<std::atomic<int>> d)
        : ran{std::move(r)}, destroyed{std::move(d)} {}
    counted(counted&& o) noexcept : ran{o.ran}, destroyed{o.destroyed} { o.live = false; }
    ~counted() {
      if (live) ++*destroyed;
    }
    void operator()() const { ++*ran; }
  };
  constexpr int per_thread = 500;
  executor_ref handle;
  {
    thread_pool pool{2};
    handle = pool.ref();
    std::latch start{4};
    std::vector<std::jthread> posters;
    for (int t = 0; t < 3; ++t)
      posters.emplace_back([&] {
        start.arrive_and_wait();
        for (int i = 0; i < per_thread; ++i) handle.post(counted{ran, destroyed});
      });
    start.arrive_and_wait();
    pool.shutdown(false);  // concurrent with the posts: some run, some are dropped
  }
  // Every task was either run or destroyed unrun, exactly once, and none leaked.
  CHECK(destroyed->load() == 3 * per_thread);
  CHECK(ran->load() <= 3 * per_thread);
}
