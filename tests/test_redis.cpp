// Tests of redis.hpp against a real redis-server the test starts itself
// (tests/support/redis_server.hpp). Where redis-server is not installed every
// case passes with a "skipped" warning; CI installs it (.ci/deps), so there
// they run. No case waits on real time: decisions run on a manual clock
// (use_caller_clock), the connection's backoff on another, and timeouts are
// detected by the socket (EAGAIN), not measured.
#include <resilience/metrics.hpp>
#include <resilience/redis.hpp>
#include <resilience/resilient.hpp>

#include <catch2/catch.hpp>

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/redis_server.hpp"

using namespace std::chrono_literals;
namespace redis = resilience::redis;
using resilience::duration;
using resilience::rate_limit_algorithm;
using support::redis_server;

namespace {

// One server for the whole run (started on first use).
redis_server& server() {
  static redis_server s;
  return s;
}

#define REQUIRE_REDIS()                                                                    \
  if (!server().running()) {                                                               \
    WARN("skipped: redis-server is not installed (Debian: apt-get install redis-server)"); \
    return;                                                                                \
  }

// A limiter in test mode (the manual clock's time) with a prefix of its own.
redis::limiter_options opts(double rate, std::int64_t burst, rate_limit_algorithm a, std::string prefix) {
  return {.limit = {.requests_per_second = rate, .burst_size = burst, .algorithm = a},
          .prefix = std::move(prefix),
          .use_caller_clock = true};
}

std::string unique_prefix(std::string_view name) {
  static int n = 0;
  return "t" + std::to_string(::getpid()) + ":" + std::string{name} + std::to_string(++n) + ":";
}

bool exists(redis::connection& c, const std::string& key) { return c.command({"EXISTS", key})->integer == 1; }

// The server's time in microseconds (TIME).
std::int64_t server_us(redis::connection& c) {
  auto r = c.command({"TIME"});
  return std::stoll(std::string{r->element[0]->str, r->element[0]->len}) * 1'000'000 +
         std::stoll(std::string{r->element[1]->str, r->element[1]->len});
}

// The cluster hash tag of a key, by Redis's rule: what is between the first
// '{' and the first '}' after it, if not empty; else the whole key.
std::string_view hash_tag_of(std::string_view key) {
  const auto open = key.find('{');
  if (open == std::string_view::npos) return key;
  const auto close = key.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

// Runs fn(worker) in `workers` forked processes; each returns a vector of
// `size` numbers, read back through a pipe. The parent must not run threads
// of its own meanwhile (a fork copies only the calling thread).
template <class F>
std::vector<std::vector<std::int64_t>> in_processes(int workers, std::size_t size, F fn) {
  std::vector<std::pair<pid_t, int>> children;
  for (int w = 0; w < workers; ++w) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(fds[0]);
      int status = 0;
      try {
        const std::vector<std::int64_t> out = fn(w);
        const auto* p = reinterpret_cast<const char*>(out.data());
        std::size_t left = out.size() * sizeof(std::int64_t);
        while (left > 0) {
          const auto n = ::write(fds[1], p, left);
          if (n <= 0) break;
          p += n;
          left -= static_cast<std::size_t>(n);
        }
      } catch (...) {
        status = 1;
      }
      ::_exit(status);
    }
    ::close(fds[1]);
    children.emplace_back(pid, fds[0]);
  }
  std::vector<std::vector<std::int64_t>> results;
  for (auto [pid, fd] : children) {
    std::vector<std::int64_t> out(size, -1);
    auto* p = reinterpret_cast<char*>(out.data());
    std::size_t left = size * sizeof(std::int64_t);
    while (left > 0) {
      const auto n = ::read(fd, p, left);
      if (n <= 0) break;
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    ::close(fd);
    int status = -1;
    ::waitpid(pid, &status, 0);
    CHECK(left == 0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    results.push_back(std::move(out));
  }
  return results;
}

}  // namespace

TEST_CASE("token bucket: exact permits and retry_after on the caller's clock", "[redis]") {
  REQUIRE_REDIS();
  resilience::manual_clock clock;
  auto conn = server().connect();
  // 3 per second: an interval of 333'333'333 ns; burst 2.
  redis::rate_limiter limits{conn, "api", opts(3, 2, rate_limit_algorithm::token_bucket, unique_prefix("tb")), clock};
  CHECK(limits.try_acquire());
  CHECK(limits.try_acquire());
  auto d = limits.try_acquire();
  CHECK_FALSE(d);
  CHECK(d.retry_after == duration{333'333'333});
  clock.advance(duration{333'333'332});
  d = limits.try_acquire();
  CHECK_FALSE(d);
  CHECK(d.retry_after == duration{1});
  clock.advance(duration{1});
  CHECK(limits.try_acquire());
  // n permits at once: two tokens take two intervals to refill.
  clock.advance(duration{2 * 333'333'333 - 1});
  d = limits.try_acquire(std::string_view{}, 2);
  CHECK_FALSE(d);
  CHECK(d.retry_after == duration{1});
  clock.advance(duration{1});
  CHECK(limits.try_acquire(std::string_view{}, 2));
  CHECK_THROWS_AS(limits.try_acquire(std::string_view{}, 3), std::invalid_argument);

  // The same inputs give the same decisions as a local token bucket.
  resilience::manual_clock local_clock;
  resilience::token_bucket local{{.requests_per_second = 3, .burst_size = 2}, local_clock};
  redis::rate_limiter remote{conn, "api", opts(3, 2, rate_limit_algorithm::token_bucket, unique_prefix("tb")),
                             local_clock};
  for (int i = 0; i < 40; ++i) {
    const auto a = local.try_acquire();
    const auto b = remote.try_acquire();
    CHECK(a.allowed == b.allowed);
    CHECK(a.retry_after == b.retry_after);
    local_clock.advance(duration{100'000'007});
  }
}

TEST_CASE("sliding window: exact permits and retry_after on the caller's clock", "[redis]") {
  REQUIRE_REDIS();
  resilience::manual_clock clock;
  auto conn = server().connect();
  // 3 per second, burst 3: a window of 999'999'999 ns (3 x 333'333'333).
  redis::rate_limiter limits{conn, "api", opts(3, 3, rate_limit_algorithm::sliding_window, unique_prefix("sw")), clock};
  CHECK(limits.try_acquire());
  clock.advance(100ms);
  CHECK(limits.try_acquire(std::string_view{}, 2));
  auto d = limits.try_acquire();
  CHECK_FALSE(d);
  CHECK(d.retry_after == duration{999'999'999 - 100'000'000});
  clock.advance(duration{999'999'999 - 100'000'000 - 1});
  CHECK_FALSE(limits.try_acquire());
  clock.advance(duration{1});
  CHECK(limits.try_acquire());  // the first grant left the window
  d = limits.try_acquire();
  CHECK_FALSE(d);
  CHECK(d.retry_after == duration{100'000'000});  // the two at +100 ms leave next

  // The same inputs give the same decisions as a local sliding window.
  resilience::manual_clock local_clock;
  resilience::limiter local{
      {.requests_per_second = 5, .burst_size = 4, .algorithm = rate_limit_algorithm::sliding_window}, local_clock};
  redis::rate_limiter remote{conn, "api", opts(5, 4, rate_limit_algorithm::sliding_window, unique_prefix("sw")),
                             local_clock};
  for (int i = 0; i < 60; ++i) {
    const std::uint32_t n = 1 + static_cast<std::uint32_t>(i % 3);
    const auto a = local.try_acquire(n);
    const auto b = remote.try_acquire(std::string_view{}, n);
    CHECK(a.allowed == b.allowed);
    CHECK(a.retry_after == b.retry_after);
    local_clock.advance(duration{37'000'011 * (1 + i % 4)});
  }
}

TEST_CASE("per-tenant keys are separate budgets, whatever bytes the names hold", "[redis]") {
  REQUIRE_REDIS();
  resilience::manual_clock clock;
  auto conn = server().connect();
  for (auto a : {rate_limit_algorithm::token_bucket, rate_limit_algorithm::sliding_window}) {
    const auto prefix = unique_prefix("tenants");
    redis::rate_limiter limits{conn, "api", opts(1, 1, a, prefix), clock};
    redis::rate_limiter other_key{conn, "api:x", opts(1, 1, a, prefix), clock};
    const std::string hostile[] = {"acme", "globex", "{acme}", "a b\nc", std::string(64 * 1024, 'z'), "x:acme", ""};
    for (const auto& t : hostile) CHECK(limits.try_acquire(t, 1));
    for (const auto& t : hostile) CHECK_FALSE(limits.try_acquire(t, 1));
    // Key "api" tenant "x:acme" and key "api:x" tenant "acme" are different budgets.
    CHECK(other_key.try_acquire("acme", 1));
    CHECK(limits.state_key("x:acme") != other_key.state_key("acme"));
  }
}

TEST_CASE("two limiter objects on two connections share one quota", "[redis]") {
  REQUIRE_REDIS();
  resilience::manual_clock clock;
  const auto prefix = unique_prefix("shared");
  for (auto a : {rate_limit_algorithm::token_bucket, rate_limit_algorithm::sliding_window}) {
    redis::rate_limiter one{server().connect(), "quota", opts(10, 5, a, prefix), clock};
    redis::rate_limiter two{server().connect(), "quota", opts(10, 5, a, prefix), clock};
    int granted = 0;
    for (int i = 0; i < 10; ++i)
      granted +=
          static_cast<int>(one.try_acquire("acme", 1).allowed) + static_cast<int>(two.try_acquire("acme", 1).allowed);
    CHECK(granted == 5);
    clock.advance(1s);
    granted = 0;
    for (int i = 0; i < 10; ++i)
      granted +=
          static_cast<int>(one.try_acquire("acme", 1).allowed) + static_cast<int>(two.try_acquire("acme", 1).allowed);
    CHECK(granted == 5);
  }
}

TEST_CASE("two processes share one quota on the server's time", "[redis]") {
  REQUIRE_REDIS();
  // Production mode (server TIME): 2 per second, burst 20; a forked child
  // and the parent together get the burst and at most a few more.
  const auto prefix = unique_prefix("fork");
  auto options = redis::limiter_options{.limit = {.requests_per_second = 2, .burst_size = 20}, .prefix = prefix};
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t child = ::fork();
  if (child == 0) {
    redis::rate_limiter limits{server().connect(), "fleet", options};
    int granted = 0;
    for (int i = 0; i < 30; ++i) granted += static_cast<int>(limits.try_acquire().allowed);
    (void)!::write(fds[1], &granted, sizeof granted);
    ::_exit(0);
  }
  auto conn = server().connect();
  const auto start_us = server_us(*conn);
  redis::rate_limiter limits{conn, "fleet", options};
  int granted = 0;
  for (int i = 0; i < 30; ++i) granted += static_cast<int>(limits.try_acquire().allowed);
  int child_granted = -1;
  REQUIRE(::read(fds[0], &child_granted, sizeof child_granted) == sizeof child_granted);
  ::waitpid(child, nullptr, 0);
  ::close(fds[0]);
  ::close(fds[1]);
  const auto elapsed_us = server_us(*conn) - start_us;
  // The burst, and the refills (2 per second) over the time the run took on
  // the server's clock, however long that was.
  CHECK(granted + child_granted >= 20);
  CHECK(granted + child_granted <= 20 + 1 + 2 * elapsed_us / 1'000'000);
}

TEST_CASE("a script flushed from the server is loaded again (NOSCRIPT)", "[redis]") {
  REQUIRE_REDIS();
  resilience::manual_clock clock;
  auto conn = server().connect();
  redis::rate_limiter limits{conn, "api", opts(1, 2, rate_limit_algorithm::token_bucket, unique_prefix("noscript")),
                             clock};
  CHECK(limits.try_acquire());
  CHECK(conn->script_reloads() == 0);
  conn->command({"SCRIPT", "FLUSH"});
  CHECK(limits.try_acquire());
  CHECK(conn->script_reloads() == 1);
  CHECK_FALSE(limits.try_acquire());  // the state survived: one decision each, nothing counted twice
}

TEST_CASE("keys expire once idle, and prefixes isolate limiters", "[redis]") {
  REQUIRE_REDIS();
  resilience::manual_clock clock;
  auto conn = server().connect();
  // Where the key's expiry is set, not whether Redis deletes it then: the
  // absolute expiry (PEXPIRETIME, Redis 7) against the server's TIME around
  // the decision. The margin keeps the key alive however slow this machine.
  for (auto a : {rate_limit_algorithm::token_bucket, rate_limit_algorithm::sliding_window}) {
    // 100 per second, burst 5: a bucket is full again 10 ms after one grant,
    // a window empty 50 ms after it; +2 ms rounding, + the margin.
    auto o = opts(100, 5, a, unique_prefix("expiry"));
    o.expiry_margin = 1h;
    redis::rate_limiter limits{conn, "api", o, clock};
    const auto before_ms = server_us(*conn) / 1000;
    CHECK(limits.try_acquire("acme", 1));
    const auto after_ms = server_us(*conn) / 1000;
    const auto key = limits.state_key("acme");
    const std::int64_t idle_ms = a == rate_limit_algorithm::token_bucket ? 10 : 50;
    const auto expires_at = conn->command({"PEXPIRETIME", key})->integer;
    CHECK(expires_at >= before_ms + idle_ms + 2 + 3'600'000);
    CHECK(expires_at <= after_ms + idle_ms + 2 + 3'600'000);
    // A hold expires when it ends (+2 ms, + the margin).
    const auto hold_before = server_us(*conn) / 1000;
    limits.hold(250ms);
    const auto hold_after = server_us(*conn) / 1000;
    const auto hold_expires = conn->command({"PEXPIRETIME", limits.hold_key()})->integer;
    CHECK(hold_expires >= hold_before + 252 + 3'600'000);
    CHECK(hold_expires <= hold_after + 252 + 3'600'000);
    // No margin: the expiry of an idle key is the idle time alone.
    redis::rate_limiter tight{conn, "api", opts(1, 5, a, unique_prefix("expiry")), clock};
    CHECK(tight.try_acquire("acme", 1));
    const auto ttl = conn->command({"PTTL", tight.state_key("acme")})->integer;
    CHECK(ttl <= (a == rate_limit_algorithm::token_bucket ? 1'002 : 5'002));

    // Another prefix: another budget, same key and tenant.
    redis::rate_limiter a1{conn, "api", opts(1, 1, a, unique_prefix("iso")), clock};
    redis::rate_limiter a2{conn, "api", opts(1, 1, a, unique_prefix("iso")), clock};
    CHECK(a1.try_acquire("acme", 1));
    CHECK(a2.try_acquire("acme", 1));
    CHECK_FALSE(a1.try_acquire("acme", 1));
  }
}

TEST_CASE("a hold (an upstream's Retry-After) holds the key for every limiter and tenant", "[redis]") {
  REQUIRE_REDIS();
  resilience::manual_clock clock;
  auto conn = server().connect();
  for (auto a : {rate_limit_algorithm::token_bucket, rate_limit_algorithm::sliding_window}) {
    const auto prefix = unique_prefix("hold");
    redis::rate_limiter one{conn, "api", opts(10, 5, a, prefix), clock};
    redis::rate_limiter two{server().connect(), "api", opts(10, 5, a, prefix), clock};
    CHECK(two.try_acquire("acme", 1));
    one.hold(2s);
    auto d = two.try_acquire("acme", 1);
    CHECK_FALSE(d);
    CHECK(d.retry_after == 2s);
    d = two.try_acquire("globex", 1);
    CHECK_FALSE(d);
    CHECK(d.retry_after == 2s);
    one.hold(1s);  // holds only extend
    clock.advance(2s - duration{1});
    CHECK(two.try_acquire("acme", 1).retry_after == duration{1});
    clock.advance(duration{1});
    CHECK(two.try_acquire("acme", 1));
  }
}

TEST_CASE("the rate_limit policy rejects with rate_limited_kind, per tenant", "[redis]") {
  REQUIRE_REDIS();
  resilience::manual_clock clock;
  redis::rate_limiter limits{server().connect(), "factor_api",
                             opts(1, 1, rate_limit_algorithm::token_bucket, unique_prefix("policy")), clock};
  static_assert(resilience::policy<redis::rate_limit, int>);
  resilience::resilient call{[] { return 42; }, redis::rate_limit{limits}};
  CHECK(call.try_call_with({.tenant = "acme"}).value() == 42);
  auto r = call.try_call_with({.tenant = "acme"});
  REQUIRE(r.has_rejection());
  CHECK(r.rejection().kind == &resilience::rate_limited_kind);
  CHECK(r.rejection().retry_after == 1s);
  CHECK(r.rejection().source == "factor_api");
  CHECK(r.rejection().detail == "acme");
  CHECK(call.try_call_with({.tenant = "globex"}).value() == 42);
}

TEST_CASE("redis gone: raise, reject or fall back to a local limiter", "[redis]") {
  REQUIRE_REDIS();
  redis_server own;  // a server of its own, to kill
  REQUIRE(own.running());
  resilience::manual_clock clock;
  auto conn = own.connect({.reconnect_backoff = 0ms, .max_reconnect_backoff = 0ms});
  auto base = opts(10, 4, rate_limit_algorithm::token_bucket, unique_prefix("down"));
  auto reject = base;
  reject.failure = redis::on_failure::reject;
  reject.failure_retry_after = 250ms;
  auto local = base;
  local.failure = redis::on_failure::local;
  local.expected_instances = 2;
  redis::rate_limiter raising{conn, "api", base, clock};
  redis::rate_limiter closed{conn, "api", reject, clock};
  redis::rate_limiter open{conn, "api", local, clock};
  CHECK(raising.try_acquire());
  own.stop();
  try {
    (void)raising.try_acquire();
    FAIL("no exception");
  } catch (const redis::error& e) {
    CHECK(e.kind() == redis::error_kind::connection);
  }
  CHECK_FALSE(conn->connected());
  auto d = closed.try_acquire();
  CHECK_FALSE(d);
  CHECK(d.retry_after == 250ms);
  // Local: the quota / 2 (5 per second, burst 2), per tenant.
  CHECK(open.try_acquire("acme", 1));
  CHECK(open.try_acquire("acme", 1));
  CHECK_FALSE(open.try_acquire("acme", 1));
  CHECK(open.try_acquire("globex", 1));
  // The policy turns the raised error into the call's failure.
  resilience::resilient call{[] { return 1; }, redis::rate_limit{raising}};
  auto r = call.try_call();
  CHECK(r.has_exception());
  // Back: the connection is made again (and the script loaded again).
  own.start();
  REQUIRE(own.running());
  CHECK(raising.try_acquire());
  CHECK(conn->connected());
}

TEST_CASE("bad options throw std::invalid_argument naming the field", "[redis]") {
  auto conn = std::make_shared<redis::connection>(redis::connection_options{.unix_socket = "/nonexistent"});
  auto throws_with = [&](redis::limiter_options o, const std::string& field) {
    try {
      redis::rate_limiter limits{conn, "k", o};
      FAIL("no exception for " << field);
    } catch (const std::invalid_argument& e) {
      CHECK_THAT(e.what(), Catch::Contains(field));
    }
  };
  throws_with({.limit = {.requests_per_second = 0}}, "requests_per_second");
  throws_with({.limit = {.algorithm = rate_limit_algorithm::leaky_bucket}}, "algorithm");
  throws_with({.limit = {.requests_per_second = 1e-6, .burst_size = 10}}, "requests_per_second");
  throws_with({.prefix = ""}, "prefix");
  throws_with({.expected_instances = 0}, "expected_instances");
  throws_with({.failure_retry_after = -1s}, "failure_retry_after");
  CHECK_THROWS_AS(redis::connection({.port = 0}), std::invalid_argument);
  CHECK_THROWS_AS(redis::connection({.command_timeout = 0s}), std::invalid_argument);
  CHECK_THROWS_AS(redis::rate_limit(redis::rate_limiter{conn, "k", {}}, {.max_wait = -1s}), std::invalid_argument);
  // Nothing to connect to: a connection error, then the backoff answers at once.
  redis::rate_limiter limits{conn, "k", {}};
  CHECK_THROWS_AS(limits.try_acquire(), redis::error);
  CHECK_THROWS_AS(limits.try_acquire(), redis::error);
}

TEST_CASE("leasing: k adapts to the process's own rate", "[redis]") {
  REQUIRE_REDIS();
  resilience::manual_clock clock;
  redis::rate_limiter limits{server().connect(), "api",
                             opts(1000, 100, rate_limit_algorithm::token_bucket, unique_prefix("lease")), clock};
  redis::leased_rate_limiter fast{limits, {.max_lease = 16, .lease_period = 10ms}};
  CHECK(fast.lease_size("acme") == 1);
  for (int i = 0; i < 40; ++i) CHECK(fast.try_acquire("acme", 1));  // no time passes: k doubles to max_lease
  CHECK(fast.lease_size("acme") == 16);
  // A slow tenant (one call per 100 ms, a lease period of 10 ms) keeps k = 1.
  for (int i = 0; i < 5; ++i) {
    CHECK(fast.try_acquire("slow", 1));
    clock.advance(100ms);
  }
  CHECK(fast.lease_size("slow") == 1);
  CHECK(fast.unspent() <= 16);
  CHECK_THROWS_AS(redis::leased_rate_limiter(limits, {.max_lease = 101}), std::invalid_argument);
  CHECK_THROWS_AS(redis::leased_rate_limiter(limits, {.lease_ttl = 0s}), std::invalid_argument);
}

TEST_CASE("leasing: unspent leases are dropped after lease_ttl and by a hold", "[redis]") {
  REQUIRE_REDIS();
  resilience::manual_clock clock;
  redis::rate_limiter limits{server().connect(), "api",
                             opts(10, 10, rate_limit_algorithm::token_bucket, unique_prefix("ttl")), clock};
  redis::leased_rate_limiter leased{limits, {.max_lease = 8, .lease_ttl = 500ms}};
  for (int i = 0; i < 4; ++i) CHECK(leased.try_acquire());  // leases of 1, 2, then 4: 3 unspent
  CHECK(leased.unspent() == 3);
  clock.advance(501ms);
  CHECK(leased.try_acquire());
  CHECK(leased.dropped() == 3);
  leased.hold(1s);
  CHECK(leased.unspent() == 0);
  CHECK_FALSE(leased.try_acquire());
}

TEST_CASE("leasing: two processes stay within the strict limit plus the unspent leases", "[redis]") {
  REQUIRE_REDIS();
  resilience::manual_clock clock;
  const auto prefix = unique_prefix("overshoot");
  // 10 per second, burst 20: a window of 2 s, 200 ticks of 10 ms. Leases of
  // at most 8 each. Keys expire on the server's real time, which may run
  // ahead of the manual one on a slow machine: the margin covers that.
  constexpr std::int64_t burst = 20;
  constexpr std::uint32_t max_lease = 8;
  for (auto a : {rate_limit_algorithm::token_bucket, rate_limit_algorithm::sliding_window}) {
    auto o = opts(10, burst, a, prefix);
    o.expiry_margin = 1h;
    redis::rate_limiter one{server().connect(), "quota", o, clock};
    redis::rate_limiter two{server().connect(), "quota", o, clock};
    redis::leased_rate_limiter p1{one, {.max_lease = max_lease, .lease_ttl = 2s}};
    redis::leased_rate_limiter p2{two, {.max_lease = max_lease, .lease_ttl = 2s}};
    std::vector<std::int64_t> grants;    // the tick of every permit spent
    for (int ms = 0; ms < 3000; ++ms) {  // ticks
      // Process one is busy all the time; process two in bursts.
      for (int i = 0; i < 3; ++i)
        if (p1.try_acquire("acme", 1)) grants.push_back(ms);
      if (ms % 250 < 20)
        for (int i = 0; i < 5; ++i)
          if (p2.try_acquire("acme", 1)) grants.push_back(ms);
      clock.advance(10ms);
    }
    // Over the run: never more than the strict limit could grant (burst + rate x time).
    CHECK(static_cast<std::int64_t>(grants.size()) <= burst + 300);
    CHECK(static_cast<std::int64_t>(grants.size()) >= 250);  // and the quota is used
    // In any 2 s window (grants at ticks t..t+199): at most what the
    // strict limiter grants in it (sliding window: the burst; token bucket:
    // the burst and 19 refills) plus both processes' unspent leases.
    const std::int64_t strict = a == rate_limit_algorithm::token_bucket ? burst + 19 : burst;
    std::size_t worst = 0;
    for (std::size_t i = 0, j = 0; i < grants.size(); ++i) {
      while (grants[i] - grants[j] >= 200) ++j;
      worst = std::max(worst, i - j + 1);
    }
    INFO(resilience::to_string(a));
    CHECK(worst <= static_cast<std::size_t>(strict + 2 * max_lease));
  }
}

TEST_CASE("threads sharing a connection and limiters grant the quota exactly once", "[redis]") {
  REQUIRE_REDIS();
  resilience::manual_clock clock;  // no time passes: exactly the burst is granted
  auto conn = server().connect();
  const auto prefix = unique_prefix("threads");
  redis::rate_limiter strict{conn, "quota", opts(1, 50, rate_limit_algorithm::token_bucket, prefix), clock};
  redis::rate_limiter other{server().connect(), "quota", opts(1, 50, rate_limit_algorithm::token_bucket, prefix),
                            clock};
  redis::leased_rate_limiter leased{other, {.max_lease = 8}};
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        const auto d = t % 2 == 0 ? strict.try_acquire("acme", 1) : leased.try_acquire("acme", 1);
        if (d) granted.fetch_add(1);
      }
    });
  for (auto& th : threads) th.join();
  while (strict.try_acquire("acme", 1)) granted.fetch_add(1);  // what a refused lease left in Redis
  CHECK(granted.load() + static_cast<int>(leased.unspent()) + static_cast<int>(leased.dropped()) == 50);
}

TEST_CASE("a paused server (SIGSTOP): command_timeout fails the call and backs off; SIGCONT recovers", "[redis]") {
  REQUIRE_REDIS();
  redis_server own;
  REQUIRE(own.running());
  resilience::manual_clock clock;
  resilience::manual_clock conn_clock;  // the backoff's time: it passes only when the test says so
  auto conn = own.connect({.command_timeout = 20ms, .reconnect_backoff = 50ms, .clock = conn_clock});
  redis::rate_limiter limits{conn, "api", opts(10, 5, rate_limit_algorithm::token_bucket, unique_prefix("paused")),
                             clock};
  CHECK(limits.try_acquire());
  own.signal(SIGSTOP);
  // The socket's timeout (EAGAIN) ends the wait, whatever this machine's speed.
  try {
    (void)limits.try_acquire();
    FAIL("no exception");
  } catch (const redis::error& e) {
    CHECK(e.kind() == redis::error_kind::timeout);
  }
  CHECK_FALSE(conn->connected());
  CHECK(conn->backing_off());
  own.signal(SIGCONT);
  // Backing off: fails at once without connecting, until the backoff has passed.
  const auto connects = conn->connects();
  CHECK_THROWS_AS(limits.try_acquire(), redis::error);
  CHECK(conn->connects() == connects);
  conn_clock.advance(50ms);
  CHECK_FALSE(conn->backing_off());
  // The timed-out decision may or may not have been applied on the server
  // (it was sent): at most one permit more is gone, never one granted twice.
  int granted = 0;
  while (limits.try_acquire()) ++granted;
  CHECK(granted >= 3);  // burst 5, one taken before, perhaps one by the timed-out call
  CHECK(granted <= 4);
  CHECK(conn->connects() == connects + 1);
}

TEST_CASE("a caller never waits past its deadline for Redis (a paused server)", "[redis]") {
  REQUIRE_REDIS();
  redis_server own;
  REQUIRE(own.running());
  resilience::manual_clock clock;
  // A command_timeout of an hour: only the call's deadline can end the wait.
  auto conn = own.connect({.command_timeout = 1h});
  auto o = opts(10, 5, rate_limit_algorithm::token_bucket, unique_prefix("deadline"));
  o.failure = redis::on_failure::reject;
  o.failure_retry_after = 300ms;
  redis::rate_limiter limits{conn, "api", o, clock};
  CHECK(limits.try_acquire());
  own.signal(SIGSTOP);
  // try_acquire with a deadline 20 ms away (the limiter's clock): the socket
  // waits at most that long, and the failure is a timeout, handled as
  // on_failure says (here: refused).
  const auto d = limits.try_acquire("acme", 1, clock.now() + 20ms);
  CHECK_FALSE(d);
  CHECK(d.retry_after == 300ms);
  CHECK(limits.stats().errors[static_cast<int>(redis::error_kind::timeout)] == 1);
  CHECK(limits.current_mode() == redis::mode::closed);
  // A short deadline says nothing about the server: no backoff, the next call connects again.
  CHECK_FALSE(conn->backing_off());
  // A deadline already passed: no round trip at all.
  CHECK_FALSE(limits.try_acquire("acme", 1, clock.now() - 1ns));
  CHECK(limits.stats().errors[static_cast<int>(redis::error_kind::timeout)] == 2);
  // Through the policy: the call's deadline bounds the round trip.
  redis::rate_limiter raising{conn, "api", opts(10, 5, rate_limit_algorithm::token_bucket, unique_prefix("deadline")),
                              clock};
  resilience::resilient call{[] { return 1; }, redis::rate_limit{raising}};
  auto r = call.try_call_with({.deadline = clock.now() + 20ms});
  REQUIRE(r.has_exception());
  try {
    std::rethrow_exception(r.exception());
  } catch (const redis::error& e) {
    CHECK(e.kind() == redis::error_kind::timeout);
  }
  own.signal(SIGCONT);
  CHECK(limits.try_acquire("acme", 1, clock.now() + 1h));
  CHECK(limits.current_mode() == redis::mode::remote);
}

TEST_CASE("shared breaker: one process's opening isolates the others within a poll", "[redis]") {
  REQUIRE_REDIS();
  resilience::manual_clock clock;
  const auto prefix = unique_prefix("cb");
  auto options = resilience::circuit_breaker_options{.name = "erp", .clock = clock};
  options.break_duration = 10s;
  redis::shared_breaker a{
      server().connect(), resilience::circuit_breaker{options}, {.prefix = prefix, .poll_interval = 100ms}};
  redis::shared_breaker b{
      server().connect(), resilience::circuit_breaker{options}, {.prefix = prefix, .poll_interval = 100ms}};
  static_assert(resilience::policy<redis::shared_breaker, int>);
  resilience::resilient call_b{[] { return 7; }, b};
  CHECK(call_b.try_call().value() == 7);  // b polled: nothing shared yet
  a.breaker().isolate();                  // a opens...
  a.sync();                               // ...and publishes it
  CHECK(a.key() == prefix + "erp");
  CHECK(call_b.try_call().value() == 7);  // b's next poll is 100 ms after its last
  clock.advance(100ms);
  auto r = call_b.try_call();  // polled: held open by a
  CHECK(r.has_rejection());
  CHECK(b.held_by_another());
  CHECK(b.breaker().state() == resilience::circuit_state::open);
  // a recovers (here: the key goes, as when its break ends); b follows at its next poll.
  a.breaker().reset();
  server().connect()->command({"DEL", a.key()});
  clock.advance(100ms);
  CHECK(call_b.try_call().value() == 7);
  CHECK_FALSE(b.held_by_another());
  CHECK(b.breaker().state() == resilience::circuit_state::closed);
  CHECK_THROWS_AS(
      redis::shared_breaker(server().connect(), resilience::circuit_breaker{options}, {.poll_interval = 0s}),
      std::invalid_argument);
}

TEST_CASE("server killed and restarted mid-run: reconnect after the backoff, scripts loaded again", "[redis]") {
  REQUIRE_REDIS();
  redis_server own;
  REQUIRE(own.running());
  resilience::manual_clock clock;
  resilience::manual_clock conn_clock;
  auto conn = own.connect({.reconnect_backoff = 100ms, .max_reconnect_backoff = 400ms, .clock = conn_clock});
  auto o = opts(1, 3, rate_limit_algorithm::token_bucket, unique_prefix("restart"));
  o.failure = redis::on_failure::local;
  o.expected_instances = 3;  // the local fallback: 1/3 per second, burst 1
  redis::rate_limiter limits{conn, "api", o, clock};
  std::vector<std::string> modes;
  limits.events().subscribe([&](const resilience::event& e) {
    if (e.is(redis::redis_mode_changed_event))
      modes.push_back(std::string{e.get<std::string_view>("from")} + ">" + std::string{e.get<std::string_view>("to")});
  });
  CHECK(limits.try_acquire());
  CHECK(conn->script_loads() == 1);
  own.stop();
  CHECK(limits.try_acquire());        // the local fallback's one permit
  CHECK_FALSE(limits.try_acquire());  // its burst is 1
  CHECK(limits.current_mode() == redis::mode::local);
  CHECK(conn->backing_off());
  own.start();
  REQUIRE(own.running());
  // Still backing off: no connection attempt, decisions stay local.
  const auto connects = conn->connects();
  CHECK_FALSE(limits.try_acquire());
  CHECK(conn->connects() == connects);
  conn_clock.advance(100ms);
  // Reconnected; the restarted server lost its state (no persistence) and
  // its scripts: the script is loaded again on the new connection.
  CHECK(limits.try_acquire());
  CHECK(conn->connects() == connects + 1);
  CHECK(conn->script_loads() == 2);
  CHECK(limits.current_mode() == redis::mode::remote);
  CHECK(modes == std::vector<std::string>{"remote>local", "local>remote"});
  // The backoff doubles per failure up to its cap, and resets once connected.
  own.stop();
  CHECK(limits.try_acquire().retry_after >= duration::zero());  // local again
  conn_clock.advance(100ms);
  CHECK_FALSE(conn->backing_off());
  (void)limits.try_acquire();  // fails to connect: backs off 200 ms now
  conn_clock.advance(100ms);
  CHECK(conn->backing_off());
  conn_clock.advance(100ms);
  CHECK_FALSE(conn->backing_off());
  const auto stats = limits.stats();
  CHECK(stats.errors[static_cast<int>(redis::error_kind::connection)] >= 2);
  CHECK(stats.mode_changes[static_cast<int>(redis::mode::local)] == 2);
}

TEST_CASE("FLUSHALL and SCRIPT FLUSH mid-run: the limiter goes on, the flushed state starts afresh", "[redis]") {
  REQUIRE_REDIS();
  redis_server own;
  REQUIRE(own.running());
  resilience::manual_clock clock;
  auto conn = own.connect();
  redis::rate_limiter limits{conn, "api", opts(1, 2, rate_limit_algorithm::sliding_window, unique_prefix("flush")),
                             clock};
  CHECK(limits.try_acquire());
  CHECK(limits.try_acquire());
  CHECK_FALSE(limits.try_acquire());
  CHECK(exists(*conn, limits.state_key()));
  own.connect()->command({"FLUSHALL"});
  CHECK_FALSE(exists(*conn, limits.state_key()));
  // The state is gone: the window is empty again (documented: flushing a
  // limiter's keys resets its quota). Scripts survive FLUSHALL.
  CHECK(limits.try_acquire());
  CHECK(conn->script_reloads() == 0);
  own.connect()->command({"SCRIPT", "FLUSH"});
  CHECK(limits.try_acquire());
  CHECK(conn->script_reloads() == 1);
  CHECK_FALSE(limits.try_acquire());
}

TEST_CASE("a wrong-type value at a key: a reply error, counted, handled by on_failure", "[redis]") {
  REQUIRE_REDIS();
  resilience::manual_clock clock;
  auto conn = server().connect();
  auto o = opts(1, 1, rate_limit_algorithm::token_bucket, unique_prefix("wrongtype"));
  redis::rate_limiter raising{conn, "api", o, clock};
  o.failure = redis::on_failure::local;
  redis::rate_limiter local{conn, "api", o, clock};
  conn->command({"RPUSH", raising.hold_key(), "x"});  // the hold: a list, not a string
  try {
    (void)raising.try_acquire();
    FAIL("no exception");
  } catch (const redis::error& e) {
    CHECK(e.kind() == redis::error_kind::reply);
    CHECK(std::string{e.what()}.find("WRONGTYPE") != std::string::npos);
  }
  CHECK(conn->connected());  // a reply error keeps the connection
  CHECK_FALSE(conn->backing_off());
  CHECK(raising.stats().errors[static_cast<int>(redis::error_kind::reply)] == 1);
  CHECK(local.try_acquire());  // decided locally
  CHECK(local.current_mode() == redis::mode::local);
  conn->command({"DEL", raising.hold_key()});
  CHECK(local.try_acquire());  // remote again: the fleet's bucket was never touched (the fallback's was)
  CHECK(local.current_mode() == redis::mode::remote);
  CHECK_FALSE(local.try_acquire());
}

TEST_CASE("AUTH: password, ACL user, and refusals of kind auth", "[redis]") {
  REQUIRE_REDIS();
  redis_server own{{"--requirepass", "s3cret", "--user", "alice", "on", ">alice-pw", "~*", "+@all"}};
  REQUIRE(own.running());
  resilience::manual_clock clock;
  const auto decide = [&](redis::connection_options o) {
    redis::rate_limiter l{own.connect(std::move(o)), "api",
                          opts(1, 1, rate_limit_algorithm::token_bucket, unique_prefix("auth")), clock};
    return l.try_acquire().allowed;
  };
  CHECK(decide({.password = "s3cret"}));
  CHECK(decide({.user = "alice", .password = "alice-pw"}));
  const auto kind_of = [&](redis::connection_options o) {
    try {
      (void)decide(std::move(o));
    } catch (const redis::error& e) {
      return std::optional{e.kind()};
    }
    return std::optional<redis::error_kind>{};
  };
  CHECK(kind_of({.password = "wrong"}) == redis::error_kind::auth);
  CHECK(kind_of({.user = "alice", .password = "s3cret"}) == redis::error_kind::auth);
  CHECK(kind_of({.user = "mallory", .password = "alice-pw"}) == redis::error_kind::auth);
  CHECK(kind_of({}) == redis::error_kind::reply);  // NOAUTH
  CHECK_THROWS_AS(redis::connection({.user = "alice"}), std::invalid_argument);
}

TEST_CASE("hostile keys and tenants cannot reach another counter; one hash tag per limiter", "[redis]") {
  REQUIRE_REDIS();
  resilience::manual_clock clock;
  auto conn = server().connect();
  const auto prefix = unique_prefix("hostile");
  const std::string names[] = {"acme",
                               "{acme}",
                               "}{",
                               "{",
                               "a b\nc\r\n*1\r\n$4\r\nPING",
                               std::string(64 * 1024, '{'),
                               "acme:",
                               ":acme",
                               std::string{"a\0b", 3},
                               ""};
  std::vector<std::unique_ptr<redis::rate_limiter>> limiters;
  for (const auto& key : names)
    if (!key.empty())
      limiters.push_back(std::make_unique<redis::rate_limiter>(
          conn, key, opts(1, 1, rate_limit_algorithm::token_bucket, prefix), clock));
  // Every (key, tenant) pair is its own budget: each grants once, then refuses.
  for (const auto& l : limiters)
    for (const auto& tenant : names) CHECK(l->try_acquire(tenant, 1));
  for (const auto& l : limiters)
    for (const auto& tenant : names) CHECK_FALSE(l->try_acquire(tenant, 1));
  // A limiter's keys (every tenant's state and the hold) share one cluster
  // hash tag, so its two-key scripts run on a cluster; other keys, other tags.
  std::vector<std::string> tags;
  for (const auto& l : limiters) {
    const auto tag = std::string{hash_tag_of(l->hold_key())};
    CHECK(tag.size() == 16);
    for (const auto& tenant : names) CHECK(hash_tag_of(l->state_key(tenant)) == tag);
    tags.push_back(tag);
  }
  std::sort(tags.begin(), tags.end());
  CHECK(std::adjacent_find(tags.begin(), tags.end()) == tags.end());
  // The hold of one key does not reach another key.
  limiters[0]->hold(10s);
  clock.advance(1s);
  CHECK_FALSE(limiters[0]->try_acquire("new", 1));
  CHECK(limiters[1]->try_acquire("new", 1));
  CHECK_THROWS_AS(redis::rate_limiter(conn, "k", {.prefix = "bad{"}), std::invalid_argument);
}

TEST_CASE("events and metrics: round trips, decisions, errors by kind, mode, leases", "[redis]") {
  REQUIRE_REDIS();
  redis_server own;
  REQUIRE(own.running());
  resilience::manual_clock clock;
  auto conn = own.connect({.reconnect_backoff = 0ms, .max_reconnect_backoff = 0ms});  // round trips on real time
  auto o = opts(10, 20, rate_limit_algorithm::token_bucket, unique_prefix("metrics"));
  o.failure = redis::on_failure::reject;
  redis::rate_limiter limits{conn, "factor_api", o, clock};
  redis::leased_rate_limiter leased{limits, {.max_lease = 8}};
  resilience::metrics_registry m{{.prefix = "greenlang", .count_global_events = false}};
  m.watch(limits);
  m.watch(leased);
  m.watch(limits);  // again: nothing
  std::vector<resilience::event> seen;
  limits.events().subscribe([&](const resilience::event& e) { seen.push_back(e); });

  for (int i = 0; i < 4; ++i) CHECK(leased.try_acquire("acme", 1));  // leases of 1, 2, 4: 3 round trips
  CHECK(leased.leases() == 3);
  CHECK(leased.leased() == 7);
  CHECK(leased.unspent() == 3);
  own.stop();
  CHECK_FALSE(limits.try_acquire("acme", 1));  // closed: refused
  own.start();
  REQUIRE(own.running());
  CHECK(limits.try_acquire("acme", 1));
  const auto text = m.render();
  INFO(text);
  CHECK_THAT(text, Catch::Contains("greenlang_redis_round_trip_seconds_count{key=\"factor_api\"} 4"));
  CHECK_THAT(text, Catch::Contains("greenlang_redis_decisions_total{key=\"factor_api\",result=\"granted\"} 4"));
  CHECK_THAT(text, Catch::Contains("greenlang_redis_decisions_total{key=\"factor_api\",result=\"refused\"} 1"));
  CHECK_THAT(text, Catch::Contains("greenlang_redis_errors_total{key=\"factor_api\",kind=\"connection\"} 1"));
  CHECK_THAT(text, Catch::Contains("greenlang_redis_errors_total{key=\"factor_api\",kind=\"timeout\"} 0"));
  CHECK_THAT(text, Catch::Contains("greenlang_redis_mode{key=\"factor_api\",mode=\"remote\"} 1"));
  CHECK_THAT(text, Catch::Contains("greenlang_redis_mode{key=\"factor_api\",mode=\"closed\"} 0"));
  CHECK_THAT(text, Catch::Contains("greenlang_redis_mode_changes_total{key=\"factor_api\",to=\"closed\"} 1"));
  CHECK_THAT(text, Catch::Contains("greenlang_redis_mode_changes_total{key=\"factor_api\",to=\"remote\"} 1"));
  CHECK_THAT(text, Catch::Contains("greenlang_redis_lease_size{key=\"factor_api\"} 4"));
  CHECK_THAT(text, Catch::Contains("greenlang_redis_leases_total{key=\"factor_api\"} 3"));
  CHECK_THAT(text, Catch::Contains("greenlang_redis_leased_permits_total{key=\"factor_api\"} 7"));
  CHECK_THAT(text, Catch::Contains("greenlang_redis_lease_unspent_permits{key=\"factor_api\"} 3"));
  CHECK_THAT(text, Catch::Contains("greenlang_redis_lease_dropped_permits_total{key=\"factor_api\"} 0"));
  CHECK_THAT(text, Catch::Contains("# TYPE greenlang_redis_round_trip_seconds histogram"));
  // Events: the error (kind connection), then closed, then remote again.
  REQUIRE(seen.size() == 3);
  CHECK(seen[0].is(redis::redis_error_event));
  CHECK(seen[0].source() == "factor_api");
  CHECK(seen[0].get<std::string_view>("kind") == "connection");
  CHECK(seen[1].is(redis::redis_mode_changed_event));
  CHECK(seen[1].get<std::string_view>("from") == "remote");
  CHECK(seen[1].get<std::string_view>("to") == "closed");
  CHECK(seen[1].severity() == resilience::log_level::warning);
  CHECK(seen[2].get<std::string_view>("to") == "remote");
  CHECK(seen[2].severity() == resilience::log_level::info);
  // Another limiter with the same key in the same registry: named in the error.
  redis::rate_limiter twin{conn, "factor_api", o, clock};
  CHECK_THROWS_AS(m.watch(twin), std::invalid_argument);
}

TEST_CASE("4 processes x 2 threads share one key: strict grants exactly the quota, leased within the bound",
          "[redis]") {
  REQUIRE_REDIS();
  // The caller's clock, frozen in every process: no refill, so the quota
  // over the run is exactly the burst, whatever the machine's speed. A fixed
  // number of attempts (8 x 100), not a period of wall time.
  constexpr std::int64_t burst = 200;
  const auto socket = server().socket();
  for (const bool leasing : {false, true}) {
    auto o = opts(1, burst, rate_limit_algorithm::token_bucket, unique_prefix(leasing ? "mp-leased" : "mp-strict"));
    o.expiry_margin = 1h;
    const auto results = in_processes(4, 3, [&](int) {
      resilience::manual_clock clock;
      auto conn = std::make_shared<redis::connection>(redis::connection_options{.unix_socket = socket});
      redis::rate_limiter limits{conn, "fleet", o, clock};
      redis::leased_rate_limiter leased{limits, {.max_lease = 16}};
      std::atomic<std::int64_t> granted{0};
      std::vector<std::thread> threads;
      for (int t = 0; t < 2; ++t)
        threads.emplace_back([&] {
          for (int i = 0; i < 100; ++i)
            if (leasing ? leased.try_acquire("acme", 1).allowed : limits.try_acquire("acme", 1).allowed)
              granted.fetch_add(1);
        });
      for (auto& th : threads) th.join();
      return std::vector<std::int64_t>{granted.load(), static_cast<std::int64_t>(leased.unspent()),
                                       static_cast<std::int64_t>(leased.dropped())};
    });
    std::int64_t spent = 0, unspent = 0, dropped = 0;
    for (const auto& r : results) {
      spent += r[0];
      unspent += r[1];
      dropped += r[2];
    }
    INFO((leasing ? "leased" : "strict"));
    if (!leasing) {
      CHECK(spent == burst);
    } else {
      // Never more than the quota; and every permit Redis granted is spent,
      // unspent in a lease, or dropped: nothing lost or counted twice.
      CHECK(spent <= burst);
      CHECK(spent + unspent + dropped == burst);
      CHECK(unspent <= 4 * 16);
    }
  }
}

TEST_CASE("4 processes x 2 threads over 1,000 tenants: no tenant gets more than its quota", "[redis]") {
  REQUIRE_REDIS();
  constexpr int tenants = 1000;
  constexpr std::int64_t burst = 3;
  const auto socket = server().socket();
  for (const bool leasing : {false, true}) {
    auto o = opts(1, burst, rate_limit_algorithm::token_bucket, unique_prefix(leasing ? "mt-leased" : "mt-strict"));
    o.expiry_margin = 1h;
    o.limit.max_partitions = tenants;
    // Per worker: the grants per tenant, then unspent and dropped permits.
    const auto results = in_processes(4, tenants + 2, [&](int worker) {
      resilience::manual_clock clock;
      auto conn = std::make_shared<redis::connection>(redis::connection_options{.unix_socket = socket});
      redis::rate_limiter limits{conn, "fleet", o, clock};
      redis::leased_rate_limiter leased{limits, {.max_lease = 2}};
      std::vector<std::atomic<std::int64_t>> granted(tenants);
      std::vector<std::thread> threads;
      for (int t = 0; t < 2; ++t)
        threads.emplace_back([&, t] {
          // Two passes over every tenant, each thread from its own starting point.
          for (int i = 0; i < 2 * tenants; ++i) {
            const int tenant = (i + (2 * worker + t) * 125) % tenants;
            const auto name = "tenant-" + std::to_string(tenant);
            if (leasing ? leased.try_acquire(name, 1).allowed : limits.try_acquire(name, 1).allowed)
              granted[static_cast<std::size_t>(tenant)].fetch_add(1);
          }
        });
      for (auto& th : threads) th.join();
      std::vector<std::int64_t> out;
      for (auto& g : granted) out.push_back(g.load());
      out.push_back(static_cast<std::int64_t>(leased.unspent()));
      out.push_back(static_cast<std::int64_t>(leased.dropped()));
      return out;
    });
    std::int64_t total = 0, unspent = 0, dropped = 0, worst = 0;
    for (int t = 0; t < tenants; ++t) {
      std::int64_t per_tenant = 0;
      for (const auto& r : results) per_tenant += r[static_cast<std::size_t>(t)];
      worst = std::max(worst, per_tenant);
      total += per_tenant;
    }
    for (const auto& r : results) {
      unspent += r[tenants];
      dropped += r[tenants + 1];
    }
    INFO((leasing ? "leased" : "strict"));
    CHECK(worst <= burst);
    if (!leasing) {
      CHECK(total == tenants * burst);  // 16 attempts per tenant: every tenant's quota is used up
    } else {
      CHECK(total + unspent + dropped == tenants * burst);
    }
  }
}

TEST_CASE("README: a fleet-wide quota per tenant that fails open to a local share", "[redis]") {
  REQUIRE_REDIS();
  const std::string socket = server().socket();
  const auto fetch_factor = [](std::string_view activity) { return activity == "electricity" ? 0.42 : 0.0; };
  auto conn = std::make_shared<redis::connection>(redis::connection_options{.unix_socket = socket});
  redis::rate_limiter factor_api{conn,
                                 "factor_api",
                                 {.limit = {.requests_per_second = 10, .burst_size = 20},
                                  .failure = redis::on_failure::local,  // Redis down: decide locally...
                                  .expected_instances = 4}};            // ...at 10/4 per second per tenant
  resilience::resilient fetch{fetch_factor, redis::rate_limit{factor_api}};
  CHECK(fetch.call_with({.tenant = "acme"}, "electricity") == 0.42);  // one permit of acme's fleet-wide 10/s
  CHECK(factor_api.current_mode() == redis::mode::remote);
  redis::leased_rate_limiter leased{factor_api, {.max_lease = 5}};  // up to 5 permits per round trip
  CHECK(leased.try_acquire("acme", 1));
}
