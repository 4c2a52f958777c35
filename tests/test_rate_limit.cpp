#include <resilience/rate_limit.hpp>
#include <resilience/resilient.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace resilience;
using namespace std::chrono_literals;

// Live heap blocks and allocations of the whole test program, to show memory
// stays flat and reconfiguration allocates nothing. Sanitizer runtimes own
// operator new themselves: there, only the behaviour is checked.
#include "support/messages.hpp"
#include "support/sanitizers.hpp"
#include "support/spin.hpp"

using namespace support;

namespace {
std::atomic<std::int64_t> live_blocks{0};
std::atomic<std::int64_t> allocations{0};

// Heap activity since construction; check_none() asserts there was none
// (where operator new is ours, outside sanitizer builds).
struct heap_probe {
  std::int64_t blocks_before = live_blocks.load();
  std::int64_t allocations_before = allocations.load();

  void check_none() const {
    const auto allocated = allocations.load() - allocations_before;
    const auto kept = live_blocks.load() - blocks_before;
#ifndef RESILIENCE_TEST_SANITIZED
    CHECK(allocated == 0);
    CHECK(kept == 0);
#else
    (void)allocated;
    (void)kept;
#endif
  }
};
}  // namespace

#ifndef RESILIENCE_TEST_SANITIZED

void* operator new(std::size_t n) {
  if (void* p = std::malloc(n ? n : 1)) {
    live_blocks.fetch_add(1, std::memory_order_relaxed);
    allocations.fetch_add(1, std::memory_order_relaxed);
    return p;
  }
  throw std::bad_alloc{};
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, std::align_val_t a) {
  const auto al = static_cast<std::size_t>(a);
  if (void* p = std::aligned_alloc(al, (n + al - 1) / al * al)) {
    live_blocks.fetch_add(1, std::memory_order_relaxed);
    allocations.fetch_add(1, std::memory_order_relaxed);
    return p;
  }
  throw std::bad_alloc{};
}
void* operator new[](std::size_t n, std::align_val_t a) { return operator new(n, a); }
namespace {
[[gnu::noinline]] void release(void* p) noexcept {
  if (!p) return;
  live_blocks.fetch_sub(1, std::memory_order_relaxed);
  std::free(p);
}
}  // namespace
void operator delete(void* p) noexcept { release(p); }
void operator delete[](void* p) noexcept { release(p); }
void operator delete(void* p, std::size_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t) noexcept { release(p); }
void operator delete(void* p, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { release(p); }
#endif

namespace {

constexpr rate_limit_algorithm all_algorithms[] = {
    rate_limit_algorithm::token_bucket, rate_limit_algorithm::leaky_bucket, rate_limit_algorithm::fixed_window,
    rate_limit_algorithm::sliding_window};

// Takes permits until refused; returns how many it got.
int drain(const limiter& l) {
  int n = 0;
  while (l.try_acquire()) ++n;
  return n;
}

// Takes permits of a registry key until refused; returns how many it got.
int drain_key(const rate_limiter& reg, std::string_view key) {
  int n = 0;
  while (reg.try_acquire(key)) ++n;
  return n;
}

}  // namespace

TEST_CASE("accuracy: 10 req/s, burst 20, polled every millisecond for 10 s", "[rate_limit]") {
  // Each poll takes permits until refused, at t = 0, 1 ms, ..., 10 s inclusive.
  const auto [algorithm, expected] = GENERATE(table<rate_limit_algorithm, int>({
      {rate_limit_algorithm::token_bucket, 20 + 100},  // full bucket, then one per 100 ms
      {rate_limit_algorithm::leaky_bucket, 1 + 100},   // smooth: one at 0, then one per 100 ms
      {rate_limit_algorithm::fixed_window, 6 * 20},    // 2 s windows starting at 0, 2, 4, 6, 8, 10
      {rate_limit_algorithm::sliding_window, 6 * 20},  // each 20 leaves the 2 s window together
  }));
  CAPTURE(to_string(algorithm));
  manual_clock clk;
  limiter l{{.requests_per_second = 10, .burst_size = 20, .algorithm = algorithm, .count_grants = true}, clk};
  int granted = 0;
  for (int ms = 0; ms <= 10'000; ++ms) {
    granted += drain(l);
    if (ms < 10'000) clk.advance(1ms);
  }
  CHECK(granted == expected);
  CHECK(l.stats().allowed == static_cast<std::uint64_t>(expected));
}

TEST_CASE("retry_after is exact: at now + retry_after it succeeds, 1 ns earlier it fails", "[rate_limit]") {
  const auto algorithm = GENERATE(from_range(std::begin(all_algorithms), std::end(all_algorithms)));
  const std::uint32_t n = GENERATE(1u, 3u);
  CAPTURE(to_string(algorithm), n);
  manual_clock clk;
  limiter l{{.requests_per_second = 3, .burst_size = 5, .algorithm = algorithm}, clk};
  drain(l);
  clk.advance(137ms);  // somewhere inside a refill / window, not on a boundary
  for (int round = 0; round < 4; ++round) {
    const auto d = l.try_acquire(n);
    if (d) continue;  // still permits left at this instant
    REQUIRE(d.retry_after > duration::zero());
    clk.advance(d.retry_after - 1ns);
    const auto early = l.try_acquire(n);
    CHECK_FALSE(early);
    CHECK(early.retry_after == 1ns);
    clk.advance(1ns);
    CHECK(l.try_acquire(n));
  }
}

TEST_CASE("a year of idle refills to exactly the burst, without overflow", "[rate_limit]") {
  const auto algorithm = GENERATE(from_range(std::begin(all_algorithms), std::end(all_algorithms)));
  CAPTURE(to_string(algorithm));
  manual_clock clk;
  limiter l{{.requests_per_second = 1000, .burst_size = 7, .algorithm = algorithm}, clk};
  drain(l);
  clk.advance(std::chrono::hours{24 * 366});
  const int expected = algorithm == rate_limit_algorithm::leaky_bucket ? 1 : 7;
  CHECK(l.available() == Approx(7));  // tokens, window permits, or free queue slots
  CHECK(drain(l) == expected);
  const auto d = l.try_acquire();
  CHECK_FALSE(d);
  CHECK(d.retry_after > duration::zero());
  CHECK(d.retry_after <= 7ms);
}

TEST_CASE("a rate that is not a whole number of nanoseconds does not drift", "[rate_limit]") {
  // 3 req/s: the interval rounds to 333'333'333 ns once; over an hour of
  // draining every 100 ms the count is the integer quotient, not a float sum.
  manual_clock clk;
  token_bucket b{{.requests_per_second = 3, .burst_size = 10}, clk};
  int granted = 0;
  for (int s = 0; s < 3600 * 10; ++s) {
    granted += drain(b);
    clk.advance(100ms);
  }
  granted += drain(b);
  CHECK(granted == 10 + 3600 * 3);
}

TEST_CASE("token bucket: burst, then the rate; a waiter reserves and sleeps on the clock", "[rate_limit]") {
  manual_clock clk;
  token_bucket b{{.requests_per_second = 10, .burst_size = 3}, clk};
  CHECK(b.try_acquire(3));
  auto d = b.try_acquire();
  CHECK_FALSE(d);
  CHECK(d.retry_after == 100ms);
  CHECK_FALSE(b.acquire(1, 99ms));  // refuses at once: 100 ms are needed
  CHECK(clk.sleepers() == 0);

  std::atomic<bool> got{false};
  std::jthread waiter{[&] { got = b.acquire(2, 1s).allowed; }};
  clk.wait_for_sleepers(1);
  CHECK(clk.next_deadline() == clk.now() + 200ms);
  // The waiter's permits are booked: nobody else gets them meanwhile.
  clk.advance(150ms);
  CHECK_FALSE(b.try_acquire());
  clk.advance(50ms);
  waiter.join();
  CHECK(got);
  CHECK(b.try_acquire().retry_after == 100ms);
}

TEST_CASE("a cancelled wait gives its booked permits back", "[rate_limit]") {
  manual_clock clk;
  token_bucket b{{.requests_per_second = 10, .burst_size = 1}, clk};
  CHECK(b.try_acquire());
  std::stop_source stop;
  std::atomic<bool> got{true};
  std::jthread waiter{[&] { got = b.acquire(1, 10s, stop.get_token()).allowed; }};
  clk.wait_for_sleepers(1);
  stop.request_stop();
  waiter.join();
  CHECK_FALSE(got);
  CHECK(b.try_acquire().retry_after == 100ms);  // as if the waiter never came
}

TEST_CASE("leaky bucket: smooth output, at most burst_size queued ahead", "[rate_limit]") {
  manual_clock clk;
  leaky_bucket q{{.requests_per_second = 10, .burst_size = 3}, clk};
  CHECK(q.try_acquire());
  auto d = q.try_acquire();
  CHECK_FALSE(d);
  CHECK(d.retry_after == 100ms);  // no burst: the next permit leaves 100 ms later

  // Two waiters book the next slots (at 100 and 200 ms): with the permit
  // leaving now, the queue of 3 is full.
  std::atomic<int> done{0};
  std::vector<std::jthread> waiters;
  for (int i = 0; i < 2; ++i) waiters.emplace_back([&] { done += q.acquire(1, 1s).allowed ? 1 : 0; });
  clk.wait_for_sleepers(2);
  CHECK_FALSE(q.acquire(1, 1s));  // queue of 3 permit-slots is full (1 leaving + 2 booked)
  clk.advance(100ms);
  clk.advance(100ms);
  for (auto& w : waiters) w.join();
  CHECK(done == 2);
  CHECK(q.try_acquire().retry_after == 100ms);
}

TEST_CASE("fixed window: exactly 2x burst across a boundary, never more", "[rate_limit]") {
  manual_clock clk;
  fixed_window w{{.requests_per_second = 10, .burst_size = 20}, clk};  // 2 s windows from now
  clk.advance(2s - 1ns);
  CHECK(drain(w) == 20);  // the last nanosecond of window 0
  const auto d = w.try_acquire();
  CHECK(d.retry_after == 1ns);
  clk.advance(1ns);
  CHECK(drain(w) == 20);  // the first nanosecond of window 1
  // 40 grants within 1 ns: exactly twice the burst, the documented worst case.
  clk.advance(2s - 1ns);
  CHECK_FALSE(w.try_acquire());
  clk.advance(1ns);
  CHECK(w.try_acquire());
}

TEST_CASE("sliding window: no window of its length ever admits more than the limit", "[rate_limit]") {
  manual_clock clk;
  constexpr int limit = 8;
  sliding_window w{{.requests_per_second = 400, .burst_size = limit}, clk};  // 20 ms window
  std::vector<time_point> grants;
  std::uint64_t lcg = 12345;
  for (int i = 0; i < 20'000; ++i) {
    lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
    const auto n = static_cast<std::uint32_t>(1 + (lcg >> 61));  // 1..8 permits
    if (w.try_acquire(n))
      for (std::uint32_t k = 0; k < n; ++k) grants.push_back(clk.now());
    clk.advance(duration{static_cast<std::int64_t>((lcg >> 33) % 7'000'000)});  // 0..7 ms
  }
  REQUIRE(grants.size() > 1000);
  bool tight = false;
  for (std::size_t i = 0; i + limit < grants.size(); ++i) {
    REQUIRE(grants[i + limit] - grants[i] >= 20ms);  // any 20 ms interval holds at most `limit`
    tight = tight || grants[i + limit] - grants[i] < 20ms + 7ms;
  }
  CHECK(tight);  // and the bound is reached: it is a limit, not a throttle
}

TEST_CASE("invalid configuration is rejected with the field's name", "[rate_limit]") {
  const auto message_of = [](auto&& make) { return invalid_argument_of(make); };
  using Catch::Matchers::Contains;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (double bad : {0.0, -1.0, nan, inf, -inf, 2e9})
    CHECK_THAT(message_of([&] { token_bucket{{.requests_per_second = bad}}; }), Contains("requests_per_second"));
  CHECK_THAT(message_of([] { fixed_window{{.burst_size = 0}}; }), Contains("burst_size"));
  CHECK_THAT(message_of([] { leaky_bucket{{.burst_size = -3}}; }), Contains("burst_size"));
  CHECK_THAT(message_of([] { sliding_window{{.burst_size = 1 << 21}}; }), Contains("burst_size"));
  CHECK_THAT(message_of([] { token_bucket{{.requests_per_second = 1e-12, .burst_size = 10}}; }),
             Contains("requests_per_second"));
  manual_clock clk;
  token_bucket b{{.burst_size = 5}, clk};
  CHECK_THAT(message_of([&] { b.acquire(6, 1s); }), Contains("burst_size"));
  CHECK_THAT(message_of([&] { b.try_acquire(6); }), Contains("burst_size"));
  rate_limiter reg{clk};
  CHECK_THAT(message_of([&] { reg.configure("llm", {.requests_per_second = nan}); }), Contains("requests_per_second"));
  CHECK_THAT(message_of([&] { reg.configure("llm", {.max_partitions = 0}); }), Contains("max_partitions"));
  CHECK_THAT(message_of([&] { rate_limit{b, {.max_wait = -1s}}; }), Contains("max_wait"));
  CHECK(clk.sleepers() == 0);
}

TEST_CASE("stress: concurrent grants never exceed the algorithm's bound", "[rate_limit][stress]") {
  const auto algorithm = GENERATE(from_range(std::begin(all_algorithms), std::end(all_algorithms)));
  CAPTURE(to_string(algorithm));
  manual_clock clk;
  limiter l{{.requests_per_second = 1000, .burst_size = 50, .algorithm = algorithm}, clk};  // window 50 ms
  constexpr int threads = 2;

  // Phase 1, time frozen: exactly the burst (one for the leaky bucket).
  std::atomic<int> granted{0};
  {
    std::vector<std::jthread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&] {
        for (int i = 0; i < 2000; ++i) granted += l.try_acquire() ? 1 : 0;
      });
  }
  CHECK(granted == (algorithm == rate_limit_algorithm::leaky_bucket ? 1 : 50));

  // Phase 2, time moving 5 ms at a time for 500 ms while threads hammer;
  // each step waits for some attempts so that threads and time interleave.
  granted = 0;
  std::atomic<bool> stop{false};
  std::atomic<long> attempts{0};
  {
    std::vector<std::jthread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        while (!stop) {
          granted += l.try_acquire(t % 2 + 1) ? t % 2 + 1 : 0;
          ++attempts;
        }
      });
    for (int step = 0; step < 100; ++step) {
      const long seen = attempts;
      while (attempts < seen + 8) std::this_thread::yield();
      clk.advance(5ms);
    }
    stop = true;
  }
  int bound = 0;
  switch (algorithm) {
    case rate_limit_algorithm::token_bucket: bound = 500; break;      // refill only: the bucket was empty
    case rate_limit_algorithm::leaky_bucket: bound = 500 + 1; break;  // one per ms, both ends included
    case rate_limit_algorithm::fixed_window:                          // windows of 50 ms touched in (0, 500] ms
    case rate_limit_algorithm::sliding_window: bound = 50 * 10; break;
  }
  CHECK(granted <= bound);
  CHECK(l.stats().allowed + l.stats().rejected > 0);
}

TEST_CASE("registry: configure, check_limit, unknown key, stats and keys", "[rate_limit]") {
  manual_clock clk;
  rate_limiter reg{clk};
  reg.configure("factor_api", {.requests_per_second = 10, .burst_size = 2, .count_grants = true});
  reg.configure("llm", {.requests_per_second = 5, .burst_size = 1, .algorithm = rate_limit_algorithm::leaky_bucket});
  CHECK(reg.configured("factor_api"));
  CHECK_FALSE(reg.configured("erp"));
  CHECK(reg.keys() == std::vector<std::string>{"factor_api", "llm"});

  reg.check_limit("factor_api");
  reg.check_limit("factor_api");
  try {
    reg.check_limit("factor_api");
    FAIL("no exception");
  } catch (const rate_limit_exceeded& e) {
    CHECK(e.key() == "factor_api");
    CHECK(e.retry_after() == 100ms);
    CHECK(e.kind() == rate_limited_kind);
  }
  CHECK_THROWS_WITH(reg.check_limit("erp"), Catch::Matchers::Contains("'erp'"));
  CHECK_THROWS_AS(reg.try_acquire("erp"), std::invalid_argument);

  const auto s = reg.stats("factor_api");
  CHECK(s.allowed == 2);
  CHECK(s.rejected == 1);
  CHECK(s.violations == 1);
  CHECK(s.available == 0.0);
  CHECK(s.config.burst_size == 2);
  clk.advance(150ms);
  CHECK(reg.stats("factor_api").available == Approx(1.5));

  int seen = 0;
  reg.for_each_stats([&](std::string_view key, const rate_limit_stats& st) {
    ++seen;
    if (key == "llm") CHECK(st.config.algorithm == rate_limit_algorithm::leaky_bucket);
  });
  CHECK(seen == 2);

  // Many keys: the lock-free table grows and still finds every one.
  for (int i = 0; i < 300; ++i) reg.configure("key-" + std::to_string(i), {});
  for (int i = 0; i < 300; ++i) CHECK(reg.configured("key-" + std::to_string(i)));
  CHECK(reg.configured("llm"));
}

TEST_CASE("registry: violations count episodes, refusals publish events", "[rate_limit]") {
  manual_clock clk;
  rate_limiter reg{clk};
  reg.configure("erp", {.requests_per_second = 1, .burst_size = 1});
  std::vector<event> seen;
  std::vector<std::string> tenants;
  reg.events().subscribe([&](const event& e) {
    if (e.is(rate_limit_violated_event)) {
      seen.push_back(e);
      tenants.emplace_back(e.tenant());
    }
  });
  CHECK(reg.try_acquire("erp"));
  CHECK_FALSE(reg.try_acquire("erp"));
  CHECK_FALSE(reg.try_acquire("erp"));
  clk.advance(1s);
  CHECK(reg.try_acquire("erp"));
  CHECK_FALSE(reg.try_acquire("erp"));
  CHECK(reg.try_acquire("erp", "acme"));
  CHECK_FALSE(reg.try_acquire("erp", "acme"));
  REQUIRE(seen.size() == 4);
  CHECK(seen[0].source() == std::string_view{"erp"});
  CHECK(seen[0].get<duration>("retry_after") == 1s);
  CHECK(tenants[3] == "acme");
  CHECK(reg.stats("erp").violations == 3);  // episodes: a refusal after a grant (tenants share the key's counters)
  CHECK(reg.stats("erp").rejected == 4);
}

TEST_CASE("registry: one noisy tenant never uses another tenant's budget", "[rate_limit]") {
  manual_clock clk;
  rate_limiter reg{clk};
  reg.configure("factor_api", {.requests_per_second = 10, .burst_size = 5});
  int noisy = 0;
  for (int i = 0; i < 1000; ++i) noisy += reg.try_acquire("factor_api", "noisy").allowed ? 1 : 0;
  CHECK(noisy == 5);
  for (int i = 0; i < 5; ++i) reg.check_limit("factor_api", "quiet");
  CHECK_THROWS_AS(reg.check_limit("factor_api", "quiet"), rate_limit_exceeded);
  CHECK(reg.try_acquire("factor_api"));  // the key's own limiter is a budget of its own too
  CHECK(reg.partitions("factor_api") == 2);
  try {
    reg.check_limit("factor_api", "noisy");
  } catch (const rate_limit_exceeded& e) {
    CHECK(e.tenant() == "noisy");
    CHECK(e.retry_after() == 100ms);
  }
}

TEST_CASE("registry: at most max_partitions tenants, the idle ones evicted first", "[rate_limit]") {
  manual_clock clk;
  rate_limiter reg{clk};
  reg.configure("llm", {.requests_per_second = 1, .burst_size = 1, .max_partitions = 3});
  CHECK(reg.try_acquire("llm", "a"));
  CHECK(reg.try_acquire("llm", "b"));
  CHECK(reg.try_acquire("llm", "c"));
  clk.advance(10ms);
  CHECK_FALSE(reg.try_acquire("llm", "a"));  // a is the most recently used now; b is the most idle
  CHECK(reg.try_acquire("llm", "d"));        // evicts b
  CHECK(reg.partitions("llm") == 3);
  CHECK_FALSE(reg.try_acquire("llm", "a"));  // a kept its state
  CHECK_FALSE(reg.try_acquire("llm", "c"));  // c too
  CHECK(reg.try_acquire("llm", "b"));        // b came back fresh (evicts d, now the most idle)
  CHECK(reg.partitions("llm") == 3);
}

TEST_CASE("registry: a million distinct tenants keep memory flat", "[rate_limit]") {
  manual_clock clk;
  rate_limiter reg{clk};
  reg.configure("factor_api",
                {.requests_per_second = 10, .burst_size = 5, .max_partitions = 1000, .count_grants = true});
  int refused = 0;
  auto flood = [&](int from, int to) {
    char id[32];
    for (int i = from; i < to; ++i) {
      const int len = std::snprintf(id, sizeof id, "tenant-%d", i);
      refused += reg.try_acquire("factor_api", std::string_view{id, static_cast<std::size_t>(len)}) ? 0 : 1;
    }
  };
  flood(0, 10'000);
  const auto blocks_after_warmup = live_blocks.load();
  flood(10'000, 1'000'000);
  CHECK(reg.partitions("factor_api") <= 1000);
  CHECK(reg.partitions("factor_api") >= 900);
  CHECK(live_blocks.load() - blocks_after_warmup <= 16);  // flat: the same partitions, recycled
  CHECK(refused == 0);                                    // every new tenant starts with a full budget
  CHECK(reg.stats("factor_api").allowed == 1'000'000);
}

TEST_CASE("registry: reconfiguring a key while threads use it is safe", "[rate_limit][stress]") {
  manual_clock clk;
  rate_limiter reg{clk};
  reg.configure("db", {.requests_per_second = 100, .burst_size = 10, .count_grants = true});
  std::atomic<bool> stop{false};
  std::atomic<long> calls{0};
  {
    std::vector<std::jthread> users;
    for (int t = 0; t < 3; ++t)
      users.emplace_back([&, t] {
        const std::string tenant = "t" + std::to_string(t);
        while (!stop) {
          (void)reg.try_acquire("db");
          (void)reg.try_acquire("db", tenant);
          (void)reg.stats("db");
          ++calls;
        }
      });
    const rate_limit_algorithm algorithms[] = {rate_limit_algorithm::sliding_window, rate_limit_algorithm::fixed_window,
                                               rate_limit_algorithm::leaky_bucket, rate_limit_algorithm::token_bucket};
    for (int i = 0; i < 200; ++i) {
      reg.configure("db", {.requests_per_second = 50.0 + i,
                           .burst_size = 1 + i % 7,
                           .algorithm = algorithms[i % 4],
                           .max_partitions = static_cast<std::size_t>(1 + i * 10),
                           .count_grants = true});
      clk.advance(1ms);
    }
    while (calls < 1000) std::this_thread::yield();
    stop = true;
  }
  const auto s = reg.stats("db");
  CHECK(s.config.requests_per_second == 249.0);
  CHECK(s.config.algorithm == rate_limit_algorithm::token_bucket);
  CHECK(s.allowed + s.rejected == static_cast<std::uint64_t>(calls.load()) * 2);
}

TEST_CASE("registry: blocking acquire waits on the clock, per key and per tenant", "[rate_limit]") {
  manual_clock clk;
  rate_limiter reg{clk};
  reg.configure("report", {.requests_per_second = 2, .burst_size = 1, .algorithm = rate_limit_algorithm::fixed_window});
  CHECK(reg.acquire("report", 0s));
  CHECK_FALSE(reg.acquire("report", 499ms));  // next window in 500 ms: refused at once
  CHECK(reg.acquire("report", "acme", 0s));
  std::atomic<int> got{0};
  {
    std::jthread a{[&] { got += reg.acquire("report", 1s).allowed ? 1 : 0; }};
    std::jthread b{[&] { got += reg.acquire("report", "acme", 1s).allowed ? 1 : 0; }};
    clk.wait_for_sleepers(2);
    clk.advance(500ms);
  }
  CHECK(got == 2);
}

TEST_CASE("rate_limit policy: rejects as a value, with the key and tenant", "[rate_limit]") {
  manual_clock clk;
  rate_limiter reg{clk};
  std::string key = "factor_api";
  reg.configure(key, {.requests_per_second = 10, .burst_size = 1});
  int calls = 0;
  resilient fetch{[&](int x) {
                    ++calls;
                    return x * 2;
                  },
                  rate_limit{reg, key}};
  fetch.with_clock(clk);
  key.assign("overwritten, the policy keeps the registry's copy");

  CHECK(fetch(21) == 42);
  const auto r = fetch.try_call(21);
  REQUIRE(r.has_rejection());
  CHECK(r.rejection().is(rate_limited_kind));
  CHECK(r.rejection().retry_after == 100ms);
  CHECK(r.rejection().source == "factor_api");
  CHECK(r.retry_after() == 100ms);
  CHECK_THROWS_AS(fetch(21), rate_limit_exceeded);
  CHECK(calls == 1);

  const auto t = fetch.try_call_with({.tenant = "acme"}, 1);
  CHECK(t.has_value());
  const auto t2 = fetch.try_call_with({.tenant = "acme"}, 1);
  REQUIRE(t2.has_rejection());
  CHECK(rate_limited_kind.tenant(t2.rejection()) == "acme");
  CHECK(calls == 2);

  CHECK_THROWS_WITH((rate_limit{reg, "unknown"}), Catch::Matchers::Contains("'unknown'"));
}

TEST_CASE("rate_limit policy: waits up to max_wait, never past the deadline", "[rate_limit]") {
  manual_clock clk;
  token_bucket bucket{{.requests_per_second = 10, .burst_size = 1}, clk, "llm"};
  resilient call{[] { return 7; }, rate_limit{bucket, {.max_wait = 150ms}}};
  call.with_clock(clk);
  CHECK(call() == 7);
  std::atomic<bool> ok{false};
  {
    std::jthread waiter{[&] { ok = call.try_call().has_value(); }};
    clk.wait_for_sleepers(1);
    clk.advance(100ms);
  }
  CHECK(ok);
  // The deadline (50 ms away) is tighter than max_wait: refused at once.
  const auto r = call.try_call_with({.deadline = clk.now() + 50ms});
  REQUIRE(r.has_rejection());
  CHECK(r.rejection().is(rate_limited_kind));
  CHECK(r.rejection().source == "llm");
  CHECK(r.rejection().retry_after == 100ms);

  // A stop request during the wait is a cancellation.
  std::stop_source stop;
  outcome<int> cancelled{0};
  {
    std::jthread waiter{[&] { cancelled = call.try_call_with({.stop = stop.get_token()}); }};
    clk.wait_for_sleepers(1);
    stop.request_stop();
  }
  REQUIRE(cancelled.has_rejection());
  CHECK(cancelled.rejection().is(cancelled_kind));
}

TEST_CASE("coarse_clock reads the steady time line", "[rate_limit]") {
  const auto c = coarse_clock();
  const auto a = clock_ref{}.now();
  const auto b = c.now();
  CHECK(std::chrono::abs(b - a) < 1s);  // same epoch: differences, not absolute speed
  token_bucket fast{{.requests_per_second = 1e6, .burst_size = 100}, c};
  CHECK(fast.try_acquire());
}

TEST_CASE("reconfiguring a bucket keeps its fill level; a new algorithm starts afresh", "[rate_limit]") {
  manual_clock clk;
  rate_limiter reg{clk};
  reg.configure("erp", {.requests_per_second = 10, .burst_size = 10});
  for (int i = 0; i < 7; ++i) reg.check_limit("erp");
  for (int i = 0; i < 7; ++i) reg.check_limit("erp", "acme");
  reg.configure("erp", {.requests_per_second = 1, .burst_size = 10});
  CHECK(reg.stats("erp").available == Approx(3));  // the 3 tokens left, not a fresh 10
  for (int i = 0; i < 3; ++i) reg.check_limit("erp");
  CHECK(reg.try_acquire("erp").retry_after == 1s);  // at the new rate
  for (int i = 0; i < 3; ++i) reg.check_limit("erp", "acme");
  CHECK(reg.try_acquire("erp", "acme").retry_after == 1s);

  reg.configure("erp", {.requests_per_second = 1, .burst_size = 10, .algorithm = rate_limit_algorithm::fixed_window});
  CHECK(reg.stats("erp").available == Approx(10));
}

TEST_CASE("hold: no permit until the upstream's Retry-After has passed", "[rate_limit]") {
  manual_clock clk;
  rate_limiter reg{clk};
  reg.configure("factor_api", {.requests_per_second = 10, .burst_size = 5});
  reg.configure("report", {.algorithm = rate_limit_algorithm::fixed_window});
  CHECK(reg.try_acquire("factor_api", "acme"));
  reg.hold("factor_api", 7s);
  reg.hold("report", 7s);
  const auto d = reg.try_acquire("factor_api");
  CHECK(d.retry_after == 7s);
  CHECK(reg.try_acquire("factor_api", "acme").retry_after == 7s);
  CHECK(reg.try_acquire("report").retry_after == 7s);
  clk.advance(7s);
  CHECK(reg.try_acquire("factor_api"));
  CHECK(reg.try_acquire("report"));
}

TEST_CASE("hold: every algorithm, every tenant, exact to the nanosecond", "[rate_limit]") {
  const auto algorithm = GENERATE(from_range(std::begin(all_algorithms), std::end(all_algorithms)));
  CAPTURE(to_string(algorithm));
  const bool bucket =
      algorithm == rate_limit_algorithm::token_bucket || algorithm == rate_limit_algorithm::leaky_bucket;
  manual_clock clk;
  rate_limiter reg{clk};
  // 100 ms per permit, 5 per 500 ms window; one tenant at a time, so a second evicts the first.
  reg.configure("factor_api",
                {.requests_per_second = 10, .burst_size = 5, .algorithm = algorithm, .max_partitions = 1});
  CHECK(reg.try_acquire("factor_api", "acme"));
  clk.advance(250ms + 7ns);  // the hold ends mid-window, off any round number
  reg.hold("factor_api", 7s);
  const auto end = clk.now() + 7s;
  const auto wait = [&] { return end - clk.now(); };

  CHECK(reg.try_acquire("factor_api").retry_after == wait());
  CHECK(reg.try_acquire("factor_api", "acme").retry_after == wait());
  CHECK(reg.stats("factor_api").available == 0);
  clk.advance(3s);
  CHECK(reg.try_acquire("factor_api", "first_seen").retry_after == wait());  // made during the hold (acme evicted)
  CHECK(reg.try_acquire("factor_api", "acme").retry_after == wait());        // evicted and back
  CHECK(reg.partitions("factor_api") == 1);
  clk.advance(wait() - 1ns);
  CHECK(reg.try_acquire("factor_api").retry_after == 1ns);
  CHECK(reg.try_acquire("factor_api", "first_seen").retry_after == 1ns);
  clk.advance(1ns);

  // At its end: a bucket grants its first permit (then refills); a window
  // grants what the window allows, and its next permit comes when it ends.
  // (A fixed window's grid starts when its limiter is made: the key's at 0,
  // first_seen's 1 ns before the hold's end, when it came back after acme.)
  const int expected = bucket ? 1 : 5;
  for (const std::string_view tenant : {"", "first_seen"}) {
    CAPTURE(tenant);
    const bool key_grid = algorithm == rate_limit_algorithm::fixed_window && tenant.empty();
    const auto next = bucket                                            ? duration{100ms}
                      : key_grid                                        ? duration{250ms - 7ns}
                      : algorithm == rate_limit_algorithm::fixed_window ? duration{500ms - 1ns}
                                                                        : duration{500ms};
    for (int i = 0; i < expected; ++i) CHECK(reg.try_acquire("factor_api", tenant));
    CHECK(reg.try_acquire("factor_api", tenant).retry_after == next);
  }
}

TEST_CASE("hold: a window full past the hold's end answers with the window's end", "[rate_limit]") {
  const auto algorithm = GENERATE(rate_limit_algorithm::fixed_window, rate_limit_algorithm::sliding_window);
  CAPTURE(to_string(algorithm));
  manual_clock clk;
  rate_limiter reg{clk};
  reg.configure("erp", {.requests_per_second = 10, .burst_size = 5, .algorithm = algorithm});
  CHECK(drain_key(reg, "erp") == 5);
  clk.advance(100ms);
  reg.hold("erp", 100ms);  // ends before the window does: a hold never grants more than the limit
  CHECK(reg.try_acquire("erp").retry_after == 400ms);
  reg.hold("erp", 50ms);  // holds only extend
  clk.advance(399ms);
  CHECK(reg.try_acquire("erp").retry_after == 1ms);
  clk.advance(1ms);
  CHECK(reg.try_acquire("erp"));
}

TEST_CASE("hold: outlives a change of algorithm", "[rate_limit]") {
  const auto to = GENERATE(from_range(std::begin(all_algorithms), std::end(all_algorithms)));
  CAPTURE(to_string(to));
  manual_clock clk;
  rate_limiter reg{clk};
  reg.configure("erp", {.requests_per_second = 10, .burst_size = 5, .algorithm = rate_limit_algorithm::fixed_window});
  reg.hold("erp", 3s);
  reg.configure("erp", {.requests_per_second = 10, .burst_size = 5, .algorithm = to});
  CHECK(reg.try_acquire("erp").retry_after == 3s);
  CHECK(reg.try_acquire("erp", "acme").retry_after == 3s);
  clk.advance(3s);
  CHECK(reg.try_acquire("erp"));
  CHECK(reg.try_acquire("erp", "acme"));
}

TEST_CASE("adaptive_rate: halves on 429, holds for Retry-After, recovers step by step", "[rate_limit]") {
  manual_clock clk;
  rate_limiter reg{clk};
  reg.configure("llm", {.requests_per_second = 10, .burst_size = 1});
  adaptive_rate adapt{
      reg, "llm", {.decrease_factor = 0.5, .min_fraction = 0.2, .recovery_step = 0.25, .recovery_interval = 10s}};
  CHECK(adapt.rate() == 10);
  adapt.on_throttled(7s);
  CHECK(adapt.rate() == 5);
  CHECK(reg.stats("llm").config.requests_per_second == 5);
  CHECK(reg.try_acquire("llm").retry_after == 7s);
  adapt.on_throttled();
  adapt.on_throttled();
  CHECK(adapt.rate() == 2);  // the floor: 20 % of 10
  adapt.on_success();
  CHECK(adapt.rate() == 2);  // not yet: 10 s without a 429 earn one step
  clk.advance(10s);
  adapt.on_success();
  CHECK(adapt.rate() == 4.5);
  adapt.on_success();
  CHECK(adapt.rate() == 4.5);  // one step per interval
  for (int i = 0; i < 5; ++i) {
    clk.advance(10s);
    adapt.on_success();
  }
  CHECK(adapt.rate() == 10);  // never above the configured rate
  CHECK_THROWS_AS((adaptive_rate{reg, "llm", {.decrease_factor = 1.0}}), std::invalid_argument);
  CHECK_THROWS_WITH((adaptive_rate{reg, "nope"}), Catch::Matchers::Contains("'nope'"));
}

TEST_CASE("adaptive_rate: a huge recovery_interval is rejected, a huge Retry-After is clamped, neither wraps",
          "[rate_limit]") {
  manual_clock clk;
  rate_limiter reg{clk};
  reg.configure("llm", {.requests_per_second = 10, .burst_size = 1});
  CHECK_THROWS_WITH((adaptive_rate{reg, "llm", {.recovery_interval = duration::max()}}),
                    "adaptive_rate: recovery_interval must be within 100 years (resilience::max_duration)");
  adaptive_rate adapt{reg, "llm", {.decrease_factor = 0.5, .recovery_interval = 10s}};
  adapt.on_throttled(duration::max());  // now + Retry-After + interval used to wrap into the past
  CHECK(adapt.rate() == 5);
  clk.advance(24h);
  adapt.on_success();
  CHECK(adapt.rate() == 5);  // still held back: the quiet stretch starts after the (clamped) Retry-After
  CHECK_FALSE(reg.try_acquire("llm"));
}

TEST_CASE("reconfiguring in place: what each algorithm carries over", "[rate_limit]") {
  manual_clock clk;
  rate_limiter reg{clk};

  SECTION("token bucket: a hold (time already promised) stays promised, for the key and its tenants") {
    // The next permit stays due at the same instant; the new rate applies after it.
    reg.configure("erp", {.requests_per_second = 10, .burst_size = 5});
    CHECK(reg.try_acquire("erp", "acme"));
    reg.hold("erp", 5s);
    reg.configure("erp", {.requests_per_second = 1, .burst_size = 5});
    CHECK(reg.try_acquire("erp").retry_after == 5s);
    CHECK(reg.try_acquire("erp", "acme").retry_after == 5s);
    clk.advance(5s);
    CHECK(reg.try_acquire("erp"));
    CHECK(reg.try_acquire("erp").retry_after == 1s);  // then the new rate
  }
  SECTION("token bucket: a smaller burst caps the tokens in hand") {
    reg.configure("erp", {.requests_per_second = 10, .burst_size = 10});
    reg.configure("erp", {.requests_per_second = 10, .burst_size = 3});
    CHECK(reg.stats("erp").available == Approx(3));
    CHECK(drain_key(reg, "erp") == 3);
    reg.configure("erp", {.requests_per_second = 10, .burst_size = 10});
    CHECK(reg.stats("erp").available == Approx(0));  // a larger burst adds no token either
  }
  SECTION("token bucket: a fraction of a token is rounded down, never up") {
    reg.configure("erp", {.requests_per_second = 3, .burst_size = 2});
    CHECK(drain_key(reg, "erp") == 2);
    clk.advance(333'333'332ns);  // one interval (333'333'333 ns) minus 1 ns
    reg.configure("erp", {.requests_per_second = 1000, .burst_size = 2});
    CHECK_FALSE(reg.try_acquire("erp"));
    clk.advance(1ms);
    CHECK(reg.try_acquire("erp"));
  }
  SECTION("leaky bucket: the booked queue stays; the new interval applies after it") {
    reg.configure("llm", {.requests_per_second = 10, .burst_size = 5, .algorithm = rate_limit_algorithm::leaky_bucket});
    CHECK(reg.try_acquire("llm"));  // the next slot is at 100 ms
    reg.configure("llm", {.requests_per_second = 1, .burst_size = 5, .algorithm = rate_limit_algorithm::leaky_bucket});
    CHECK(reg.try_acquire("llm").retry_after == 100ms);
    clk.advance(100ms);
    CHECK(reg.try_acquire("llm"));
    CHECK(reg.try_acquire("llm").retry_after == 1s);
  }
  SECTION("fixed window: the current window keeps its start and count; the new rate sets its length") {
    reg.configure("report",
                  {.requests_per_second = 10, .burst_size = 10, .algorithm = rate_limit_algorithm::fixed_window});
    for (int i = 0; i < 7; ++i) reg.check_limit("report");
    clk.advance(300ms);
    reg.configure("report",
                  {.requests_per_second = 20, .burst_size = 10, .algorithm = rate_limit_algorithm::fixed_window});
    CHECK(reg.stats("report").available == Approx(3));
    CHECK(drain_key(reg, "report") == 3);
    CHECK(reg.try_acquire("report").retry_after == 200ms);  // the window [0, 500 ms) at the new length
    clk.advance(200ms);
    CHECK(drain_key(reg, "report") == 10);  // [500 ms, 1 s)
    clk.advance(499ms);
    CHECK_FALSE(reg.try_acquire("report"));
    clk.advance(1ms);
    CHECK(drain_key(reg, "report") == 10);  // [1 s, 1.5 s)
    // A window that has ended carries nothing.
    clk.advance(2s);
    reg.configure("report",
                  {.requests_per_second = 5, .burst_size = 4, .algorithm = rate_limit_algorithm::fixed_window});
    CHECK(drain_key(reg, "report") == 4);
  }
  SECTION("sliding window: the log of grants stays, only the window length changes") {
    reg.configure(
        "db",
        {.requests_per_second = 10, .burst_size = 4, .algorithm = rate_limit_algorithm::sliding_window});  // 400 ms
    CHECK(reg.try_acquire("db", 2));
    clk.advance(100ms);
    CHECK(reg.try_acquire("db", 2));
    clk.advance(50ms);
    reg.configure(
        "db",
        {.requests_per_second = 20, .burst_size = 4, .algorithm = rate_limit_algorithm::sliding_window});  // 200 ms
    const auto d = reg.try_acquire("db");
    CHECK_FALSE(d);
    CHECK(d.retry_after == 50ms);  // the grants at 0 leave the 200 ms window at 200 ms
    // A smaller burst keeps the newest grants: the two at 100 ms.
    reg.configure(
        "db",
        {.requests_per_second = 10, .burst_size = 2, .algorithm = rate_limit_algorithm::sliding_window});  // 200 ms
    CHECK(reg.try_acquire("db").retry_after == 150ms);
    clk.advance(150ms);
    CHECK(drain_key(reg, "db") == 2);
  }
}

TEST_CASE("a cancelled wait is undone exactly, even across a rate change", "[rate_limit]") {
  manual_clock clk;
  rate_limiter reg{clk};
  reg.configure("erp", {.requests_per_second = 10, .burst_size = 1});
  CHECK(reg.try_acquire("erp"));  // empty now; the next permit at 100 ms
  std::stop_source stop;
  std::atomic<bool> got{true};
  std::jthread waiter{[&] { got = reg.acquire("erp", 10s, stop.get_token()).allowed; }};
  clk.wait_for_sleepers(1);  // it booked the permit at 100 ms
  reg.configure("erp", {.requests_per_second = 1, .burst_size = 1});

  SECTION("the booking is given back: as if the waiter never came") {
    stop.request_stop();
    waiter.join();
    CHECK_FALSE(got);
    CHECK(reg.try_acquire("erp").retry_after == 1s);  // empty at 0, refilled at the new rate
  }
  SECTION("but never earlier than a hold") {
    reg.hold("erp", 5s);
    stop.request_stop();
    waiter.join();
    CHECK_FALSE(got);
    CHECK(reg.try_acquire("erp").retry_after == 5s);
  }
}

TEST_CASE("reconfiguring the rate 100,000 times allocates nothing and keeps nothing", "[rate_limit]") {
  // What adaptive_rate does on each step: the same algorithm and burst, a new
  // rate. The key's limiter and every tenant's are changed in place.
  const auto algorithm = GENERATE(from_range(std::begin(all_algorithms), std::end(all_algorithms)));
  CAPTURE(to_string(algorithm));
  manual_clock clk;
  rate_limiter reg{clk};
  reg.configure("erp", {.requests_per_second = 100, .burst_size = 10, .algorithm = algorithm});
  std::vector<std::string> tenants;
  for (int t = 0; t < 50; ++t) tenants.push_back("tenant-" + std::to_string(t));
  for (const auto& t : tenants) CHECK(reg.try_acquire("erp", t, 3));
  REQUIRE(reg.partitions("erp") == 50);

  const heap_probe heap;
  for (int i = 0; i < 100'000; ++i) {
    reg.configure("erp", {.requests_per_second = 100.0 + i % 1000, .burst_size = 10, .algorithm = algorithm});
    if (i % 1000 == 0) clk.advance(1ms);
  }
  heap.check_none();
  CHECK(reg.partitions("erp") == 50);  // the same tenants, reshaped
  CHECK(reg.stats("erp").config.requests_per_second == 100.0 + 99'999 % 1000);
  // Still limiting, at the last rate (1099 req/s, a burst of 10 every 9.1 ms).
  CHECK(reg.try_acquire("erp", tenants[0], 10));
  const auto d = reg.try_acquire("erp", tenants[0]);
  CHECK_FALSE(d);
  CHECK(d.retry_after > duration::zero());
  CHECK(d.retry_after <= 9'099'181ns);  // 10 intervals of round(1e9 / 1099) ns
}

TEST_CASE("adaptive_rate: 100,000 steps allocate nothing and keep nothing", "[rate_limit]") {
  manual_clock clk;
  rate_limiter reg{clk};
  reg.configure("llm", {.requests_per_second = 10, .burst_size = 5});
  for (int t = 0; t < 20; ++t) (void)reg.try_acquire("llm", "tenant-" + std::to_string(t));
  adaptive_rate adapt{
      reg, "llm", {.decrease_factor = 0.5, .min_fraction = 0.05, .recovery_step = 0.1, .recovery_interval = 1s}};

  const heap_probe heap;
  int steps = 0;
  for (int i = 0; i < 50'000; ++i) {
    double rate = adapt.rate();
    adapt.on_throttled(i % 2 ? std::optional<duration>{250ms} : std::nullopt);  // one step down (and a hold)
    steps += adapt.rate() != rate ? 1 : 0;
    clk.advance(1250ms);
    rate = adapt.rate();
    adapt.on_success();  // one step back up
    steps += adapt.rate() != rate ? 1 : 0;
  }
  heap.check_none();
  CHECK(steps == 100'000);   // every call changed the rate: 100,000 reconfigurations
  CHECK(adapt.rate() == 2);  // x -> x/2 -> x/2 + 1 settles on 1 <-> 2
  CHECK(reg.stats("llm").config.requests_per_second == 2);
  CHECK(reg.partitions("llm") == 20);
}

TEST_CASE("stress: while the rate keeps changing, grants stay within the highest rate in force",
          "[rate_limit][stress]") {
  // Two threads take permits of a key and of a tenant while this thread
  // changes the rate four times per virtual millisecond (same burst), so
  // that calls in flight cross reconfigurations. Whatever the interleaving,
  // no grant may be priced at a rate that was never in force: the totals
  // stay within what the highest rate allows over the run, plus the burst.
  const auto algorithm = GENERATE(from_range(std::begin(all_algorithms), std::end(all_algorithms)));
  CAPTURE(to_string(algorithm));
  manual_clock clk;
  rate_limiter reg{clk};
  constexpr std::int64_t burst = 10;
  constexpr double rates[] = {1000, 700, 850, 500, 950};
  constexpr int steps = 300;  // virtual milliseconds
  auto config = [&](double rate) {
    return limiter_options{.requests_per_second = rate, .burst_size = burst, .algorithm = algorithm};
  };
  reg.configure("db", config(rates[0]));
  double highest = rates[0];

  std::atomic<bool> stop{false};
  std::atomic<long> attempts{0};
  std::atomic<long> key_grants{0};
  std::atomic<long> tenant_grants{0};
  {
    std::vector<std::jthread> users;
    for (int t = 0; t < 2; ++t)
      users.emplace_back([&] {
        for (long i = 0; !stop; ++i) {
          key_grants += reg.try_acquire("db") ? 1 : 0;
          tenant_grants += reg.try_acquire("db", "acme") ? 1 : 0;
          if (i % 64 == 0) (void)reg.stats("db");
          ++attempts;
        }
      });
    std::uint64_t lcg = 42;
    for (int step = 0; step < steps; ++step) {
      for (int k = 0; k < 4; ++k) {
        lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
        const double rate = rates[(lcg >> 33) % std::size(rates)];
        highest = std::max(highest, rate);
        reg.configure("db", config(rate));
        const long seen = attempts;
        while (attempts < seen + 2) std::this_thread::yield();
      }
      clk.advance(1ms);
    }
    stop = true;
  }
  // Grants happen at virtual times 0 .. steps ms; the fastest interval is
  // 1/highest, the shortest window burst/highest.
  const double span = steps / 1000.0;
  long bound = 0;
  switch (algorithm) {
    case rate_limit_algorithm::token_bucket:
      bound = burst + std::lround(highest * span);
      break;  // full at the start, then refill
    case rate_limit_algorithm::leaky_bucket: bound = 1 + std::lround(highest * span); break;  // one per interval
    case rate_limit_algorithm::fixed_window:  // burst per window of >= burst/highest
    case rate_limit_algorithm::sliding_window:
      bound = burst * (1 + std::lround(std::floor(span * highest / burst)));
      break;
  }
  CAPTURE(highest, bound);
  CHECK(key_grants <= bound);
  CHECK(tenant_grants <= bound);
  CHECK(key_grants >= bound / 3);  // and it did grant: the bound is not met by refusing everything
  CHECK(tenant_grants >= bound / 3);
}

TEST_CASE("grant counting: off by default, on for good once enabled", "[rate_limit]") {
  manual_clock clk;
  token_bucket bucket{{.requests_per_second = 10, .burst_size = 2}, clk};
  CHECK_FALSE(bucket.config().count_grants);
  CHECK(bucket.try_acquire());
  CHECK(bucket.try_acquire());
  CHECK_FALSE(bucket.try_acquire());
  CHECK(bucket.stats().allowed == 0);   // grants: not counted by default
  CHECK(bucket.stats().rejected == 1);  // refusals: always
  bucket.enable_grant_counting();
  clk.advance(100ms);
  CHECK(bucket.try_acquire());
  CHECK(bucket.stats().allowed == 1);
  CHECK(bucket.stats().config.count_grants);

  rate_limiter reg{clk};
  reg.configure("erp", {.requests_per_second = 10, .burst_size = 2});
  CHECK(reg.try_acquire("erp"));
  CHECK(reg.stats("erp").allowed == 0);
  reg.enable_grant_counting();
  CHECK(reg.try_acquire("erp", "acme"));
  CHECK(reg.stats("erp").allowed == 1);
  // A later configure() asking for no counting does not turn it off...
  reg.configure("erp", {.requests_per_second = 5, .burst_size = 2, .count_grants = false});
  CHECK(reg.try_acquire("erp"));
  CHECK(reg.stats("erp").allowed == 2);
  CHECK(reg.stats("erp").config.count_grants);
  // ...and a key configured later is counted too.
  reg.configure("llm", {});
  CHECK(reg.try_acquire("llm"));
  CHECK(reg.stats("llm").allowed == 1);

  // Without enable_grant_counting, each configure() decides.
  rate_limiter other{clk};
  other.configure("erp", {.count_grants = true});
  CHECK(other.try_acquire("erp"));
  other.configure("erp", {.count_grants = false});
  CHECK(other.try_acquire("erp"));
  CHECK(other.stats("erp").allowed == 1);
  CHECK_FALSE(other.stats("erp").config.count_grants);
}

TEST_CASE(
    "stress: time frozen, tenants and key share no budget and never exceed it while the key is reconfigured and held",
    "[rate_limit][stress]") {
  const auto algorithm = GENERATE(from_range(std::begin(all_algorithms), std::end(all_algorithms)));
  CAPTURE(to_string(algorithm));
  manual_clock clk;
  rate_limiter reg{clk};
  constexpr std::int64_t burst = 8;
  auto config = [&](double rate) {
    return limiter_options{
        .requests_per_second = rate, .burst_size = burst, .algorithm = algorithm, .count_grants = true};
  };
  reg.configure("db", config(100));
  // Time never moves: nothing refills, so each limiter grants at most what
  // it started with (a leaky bucket's try_acquire: one) whatever the
  // reconfigurations and holds do meanwhile.
  const std::int64_t budget = algorithm == rate_limit_algorithm::leaky_bucket ? 1 : burst;
  const std::string tenants[] = {"", "t1", "t2", "t3", "t4", "t5", "t6", "t7"};
  constexpr int threads = 4;
#ifdef RESILIENCE_TEST_TSAN
  constexpr int rounds = 3'000;
#else
  constexpr int rounds = 30'000;
#endif
  std::atomic<std::int64_t> granted[std::size(tenants)] = {};
  std::atomic<std::uint64_t> refused{0};
  std::atomic<int> busy{threads}, configured{0}, attempts{0};
  {
    std::vector<std::jthread> users;
    users.emplace_back([&] {
      bool held = false;
      for (int i = 0; busy.load() > 0; ++i) {
        reg.configure("db", config(i % 2 == 0 ? 200 : 100));
        if (!held && attempts.load() > threads * rounds / 2) {  // once half the calls are made: grants came before
          reg.hold("db", 1s);
          held = true;
        }
        ++configured;
        std::this_thread::yield();
      }
    });
    for (int t = 0; t < threads; ++t)
      users.emplace_back([&, t] {
        spin_until([&] { return configured.load() > 0; });  // reconfigurations race the first grants
        for (int i = 0; i < rounds; ++i) {
          const auto k = static_cast<std::size_t>(i + t) % std::size(tenants);
          if (reg.try_acquire("db", tenants[k])) ++granted[k];
          else ++refused;
          ++attempts;
        }
        --busy;
      });
  }
  INFO("reconfigurations " << configured.load());
  std::uint64_t total = 0;
  for (std::size_t k = 0; k < std::size(tenants); ++k) {
    CAPTURE(tenants[k]);
    CHECK(granted[k].load() <= budget);
    total += static_cast<std::uint64_t>(granted[k].load());
  }
  CHECK(total >= 1);
  const auto s = reg.stats("db");
  CHECK(s.allowed == total);
  CHECK(s.rejected == refused.load());
  CHECK(s.allowed + s.rejected == std::uint64_t{threads} * rounds);
}
