// Tests of redis.hpp against a real redis-server the test starts itself (a
// unix socket in a temporary directory, no persistence), killed at the end.
// Where redis-server is not installed every case passes with a "skipped"
// warning; CI installs it (.ci/deps), so there they run.
#include <resilience/redis.hpp>
#include <resilience/resilient.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>

using namespace std::chrono_literals;
namespace redis = resilience::redis;
using resilience::duration;
using resilience::rate_limit_algorithm;

namespace {

// The redis-server on PATH, or empty.
std::string find_redis_server() {
  const char* path = std::getenv("PATH");
  std::string_view rest = path ? path : "/usr/bin:/usr/sbin";
  while (!rest.empty()) {
    const auto colon = rest.find(':');
    const std::filesystem::path candidate = std::filesystem::path{std::string{rest.substr(0, colon)}} / "redis-server";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
  }
  return {};
}

// A redis-server of our own on a unix socket in a fresh temporary directory.
class redis_server {
 public:
  redis_server() {
    const auto binary = find_redis_server();
    if (binary.empty()) return;
    char tmpl[] = "/tmp/resilience-redis-XXXXXX";
    if (!::mkdtemp(tmpl)) return;
    dir_ = tmpl;
    socket_ = dir_ + "/redis.sock";
    start(binary);
  }
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;
  ~redis_server() {
    stop();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  bool running() const { return pid_ > 0; }
  void signal(int sig) const { ::kill(pid_, sig); }
  const std::string& socket() const { return socket_; }

  void start(const std::string& binary = find_redis_server()) {
    pid_ = ::fork();
    if (pid_ == 0) {
      // Its log (and its hold on our stdout) goes nowhere.
      const int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);
      ::dup2(null, 2);
      ::execl(binary.c_str(), binary.c_str(), "--port", "0", "--unixsocket", socket_.c_str(), "--unixsocketperm", "700",
              "--save", "", "--appendonly", "no", "--dir", dir_.c_str(), "--logfile", "", "--loglevel", "warning",
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // Wait until it answers.
    for (int i = 0; i < 500; ++i) {
      if (redisContext* c = redisConnectUnix(socket_.c_str())) {
        const bool ok = !c->err;
        redisFree(c);
        if (ok) return;
      }
      std::this_thread::sleep_for(10ms);
    }
    stop();
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    std::filesystem::remove(socket_);
  }

  std::shared_ptr<redis::connection> connect(redis::connection_options o = {}) const {
    o.unix_socket = socket_;
    return std::make_shared<redis::connection>(o);
  }

 private:
  std::string dir_, socket_;
  pid_t pid_ = -1;
};

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
  redis::rate_limiter limits{server().connect(), "fleet", options};
  int granted = 0;
  for (int i = 0; i < 30; ++i) granted += static_cast<int>(limits.try_acquire().allowed);
  int child_granted = -1;
  REQUIRE(::read(fds[0], &child_granted, sizeof child_granted) == sizeof child_granted);
  ::waitpid(child, nullptr, 0);
  ::close(fds[0]);
  ::close(fds[1]);
  CHECK(granted + child_granted >= 20);
  CHECK(granted + child_granted <= 21);  // the burst, and one refill in the half second the test could take
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
  for (auto a : {rate_limit_algorithm::token_bucket, rate_limit_algorithm::sliding_window}) {
    // 100 per second, burst 5: full (or empty) again 50 ms after the last grant.
    redis::rate_limiter limits{conn, "api", opts(100, 5, a, unique_prefix("expiry")), clock};
    CHECK(limits.try_acquire("acme", 1));
    const auto key = limits.state_key("acme");
    CHECK(exists(*conn, key));
    const auto ttl = conn->command({"PTTL", key})->integer;
    CHECK(ttl > 0);
    CHECK(ttl <= 52);
    std::this_thread::sleep_for(120ms);
    CHECK_FALSE(exists(*conn, key));

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

TEST_CASE("a wrong-type value at a key is a reply error", "[redis]") {
  REQUIRE_REDIS();
  resilience::manual_clock clock;
  auto conn = server().connect();
  redis::rate_limiter limits{conn, "api", opts(1, 1, rate_limit_algorithm::token_bucket, unique_prefix("wrongtype")),
                             clock};
  conn->command({"SET", limits.state_key(), "x"});
  try {
    (void)limits.try_acquire();
    FAIL("no exception");
  } catch (const redis::error& e) {
    CHECK(e.kind() == redis::error_kind::reply);
    CHECK(std::string{e.what()}.find("WRONGTYPE") != std::string::npos);
  }
  CHECK(conn->connected());  // a reply error keeps the connection
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
  // at most 8 each. Keys expire on the server's real time: the manual clock
  // must run ahead of it (10 ms a tick), or a key could expire while its
  // state still counts on the manual time line.
  constexpr std::int64_t burst = 20;
  constexpr std::uint32_t max_lease = 8;
  for (auto a : {rate_limit_algorithm::token_bucket, rate_limit_algorithm::sliding_window}) {
    redis::rate_limiter one{server().connect(), "quota", opts(10, burst, a, prefix), clock};
    redis::rate_limiter two{server().connect(), "quota", opts(10, burst, a, prefix), clock};
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

TEST_CASE("a paused server (SIGSTOP) fails the call after command_timeout; it works again after SIGCONT", "[redis]") {
  REQUIRE_REDIS();
  redis_server own;
  REQUIRE(own.running());
  resilience::manual_clock clock;
  auto conn = own.connect({.command_timeout = 200ms, .reconnect_backoff = 0ms, .max_reconnect_backoff = 0ms});
  redis::rate_limiter limits{conn, "api", opts(10, 5, rate_limit_algorithm::token_bucket, unique_prefix("paused")),
                             clock};
  CHECK(limits.try_acquire());
  own.signal(SIGSTOP);
  const auto start = std::chrono::steady_clock::now();
  try {
    (void)limits.try_acquire();
    FAIL("no exception");
  } catch (const redis::error& e) {
    CHECK(e.kind() == redis::error_kind::connection);
  }
  const auto waited = std::chrono::steady_clock::now() - start;
  CHECK(waited >= 150ms);
  CHECK(waited < 2s);
  own.signal(SIGCONT);
  // The timed-out decision may or may not have been applied on the server
  // (it was sent): at most one permit more is gone, never one granted twice.
  int granted = 0;
  while (limits.try_acquire()) ++granted;
  CHECK(granted >= 3);  // burst 5, one taken before, perhaps one by the timed-out call
  CHECK(granted <= 4);
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
