// resilience/redis.hpp: fleet-wide rate limits on Redis — one quota shared by
// every process that names the same key. Optional: this header needs hiredis
// (Debian libhiredis-dev; CMake target resilience::redis); no other header
// of the library includes it.
//
//   auto redis = std::make_shared<resilience::redis::connection>(resilience::redis::connection_options{.unix_socket =
//   "/run/redis.sock"}); resilience::redis::rate_limiter limits{redis, "factor_api", {.limit = {.requests_per_second =
//   10, .burst_size = 20}}}; if (auto d = limits.try_acquire("acme"); !d) wait(d.retry_after);   // the fleet's budget
//   for tenant "acme" resilience::resilient fetch{fetch_factor, resilience::redis::rate_limit{limits}};
//
// Each decision is one EVALSHA of a Lua script (loaded once per connection
// with SCRIPT LOAD, loaded again after a NOSCRIPT reply), so it is atomic on
// the server and exact: token bucket and sliding window, with the same
// integer-nanosecond arithmetic and the same retry_after as the local
// limiters (limiter.hpp). Time comes from the server (TIME), so hosts with
// skewed clocks share one time line; limiter_options::use_caller_clock makes
// the script use the limiter's clock instead (tests on a manual_clock).
// Keys: <prefix><tb|sw>:<key length>:<key>:<tenant> and
// <prefix>hold:<key length>:<key>; the length makes every (key, tenant) pair
// its own key, whatever bytes the names hold. A key expires (PEXPIRE) once
// it is back to its idle state (a full bucket, an empty window), so an idle
// tenant costs Redis nothing.
//
// Also here: leased_rate_limiter (k permits per round trip, spent locally;
// bounded overshoot) and shared_breaker (a breaker's openings shared by a
// short poll).
//
// Failures of Redis (connection refused or lost, a timeout, an error reply
// such as WRONGTYPE) are redis::error exceptions out of connection; each
// limiter chooses what a decision does then (on_failure): raise the
// exception (default), reject (fail closed), or fall back to a local limiter
// at the quota divided by the expected number of instances (fail open).
#pragma once

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>

#include <sys/time.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <initializer_list>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "circuit_breaker.hpp"
#include "clock.hpp"
#include "context.hpp"
#include "limiter.hpp"
#include "limiter_options.hpp"
#include "outcome.hpp"
#include "rate_limit.hpp"

namespace resilience {
inline namespace v1 {
namespace redis {

/// Where and how to connect.
struct connection_options {
  std::string unix_socket{};       ///< a unix socket path; empty: TCP to host:port
  std::string host = "127.0.0.1";  ///< TCP host (when unix_socket is empty)
  int port = 6379;                 ///< TCP port; 1..65535
  std::string user{};              ///< ACL user for AUTH (Redis 6+); empty: AUTH with the password alone
  std::string password{};          ///< empty: no AUTH
  duration connect_timeout = std::chrono::seconds{1};  ///< for connecting; > 0
  duration command_timeout = std::chrono::seconds{1};  ///< for each command's round trip; > 0
  duration reconnect_backoff = std::chrono::milliseconds{
      100};  ///< after a failure, commands fail at once (no connect attempt) for this long, doubling per failure; >= 0
  duration max_reconnect_backoff = std::chrono::seconds{5};  ///< the cap of that doubling; >= reconnect_backoff
};

/// What went wrong talking to Redis.
enum class error_kind : std::uint8_t {
  connection,  ///< no connection: refused, lost, timed out, AUTH failed, or waiting out the reconnect backoff
  reply        ///< the server answered with an error (WRONGTYPE, OOM, a script error...)
};

/// A failure talking to Redis (the connection is dropped and re-made later on `connection` errors).
class error : public std::runtime_error {
 public:
  error(error_kind kind, const std::string& what) : std::runtime_error{"redis: " + what}, kind_{kind} {}
  /// Connection or reply.
  error_kind kind() const noexcept { return kind_; }

 private:
  error_kind kind_;
};

/// Frees a hiredis reply.
struct reply_deleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
/// A reply of the server (never null once returned).
using reply = std::unique_ptr<redisReply, reply_deleter>;

/// A Lua script run by EVALSHA (its SHA1 learnt from SCRIPT LOAD on first use).
struct script {
  std::string_view source;  ///< the Lua text; must outlive the script
};

/// One synchronous hiredis connection, shared by threads (a mutex around the
/// context: one command at a time). Connects on first use; after a failure
/// it drops the context and commands throw error{connection} at once until
/// the backoff has passed, then the next command connects again (and AUTHs).
class connection {
 public:
  /// Validates the options (std::invalid_argument naming the field); does not connect yet.
  explicit connection(connection_options options)
      : options_{validated(std::move(options))}, backoff_{options_.reconnect_backoff} {}
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection() = default;

  /// Runs one command (its arguments, binary-safe); throws error on failure
  /// or on an error reply.
  reply command(std::initializer_list<std::string_view> args) {
    std::lock_guard lock{mutex_};
    auto r = command_locked(args.begin(), args.size());
    if (r->type == REDIS_REPLY_ERROR) throw error{error_kind::reply, std::string{r->str, r->len}};
    return r;
  }

  /// Runs `s` with EVALSHA on keys and args, loading it (SCRIPT LOAD) when
  /// this connection has not yet or the server says NOSCRIPT (it restarted,
  /// or SCRIPT FLUSH). Throws error on failure or on an error reply.
  reply eval(const script& s, std::initializer_list<std::string_view> keys,
             std::initializer_list<std::string_view> args) {
    std::lock_guard lock{mutex_};
    for (int attempt = 0;; ++attempt) {
      auto& sha = sha_of(s);
      if (sha.empty()) {
        const std::string_view load[] = {"SCRIPT", "LOAD", s.source};
        auto r = command_locked(load, 3);
        if (r->type != REDIS_REPLY_STRING)
          throw error{error_kind::reply,
                      "SCRIPT LOAD: " + std::string{r->str ? r->str : "unexpected reply", r->str ? r->len : 16}};
        sha.assign(r->str, r->len);
      }
      std::vector<std::string_view> argv;
      argv.reserve(3 + keys.size() + args.size());
      const auto count = std::to_string(keys.size());
      argv.insert(argv.end(), {std::string_view{"EVALSHA"}, std::string_view{sha}, std::string_view{count}});
      argv.insert(argv.end(), keys);
      argv.insert(argv.end(), args);
      auto r = command_locked(argv.data(), argv.size());
      if (r->type == REDIS_REPLY_ERROR) {
        const std::string_view text{r->str, r->len};
        if (text.starts_with("NOSCRIPT") && attempt == 0) {
          sha.clear();
          ++reloads_;
          continue;
        }
        throw error{error_kind::reply, std::string{text}};
      }
      return r;
    }
  }

  /// Times a script was loaded again after NOSCRIPT (for tests and metrics).
  std::uint64_t script_reloads() const {
    std::lock_guard lock{mutex_};
    return reloads_;
  }
  /// True while a context is open (the last command did not fail on the connection).
  bool connected() const {
    std::lock_guard lock{mutex_};
    return ctx_ != nullptr;
  }
  /// The options in force.
  const connection_options& options() const noexcept { return options_; }

 private:
  struct context_deleter {
    void operator()(redisContext* c) const noexcept { redisFree(c); }
  };

  // Blocks SIGPIPE in this thread for its lifetime (hiredis writes with
  // write(), which raises it on a closed socket) and discards one raised
  // meanwhile; costs two sigprocmask calls per command.
  struct sigpipe_guard {
    sigpipe_guard() {
      sigemptyset(&pipe_set);
      sigaddset(&pipe_set, SIGPIPE);
      sigset_t pending_set;
      sigemptyset(&pending_set);
      ::sigpending(&pending_set);
      was_pending = sigismember(&pending_set, SIGPIPE) == 1;
      ::pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    }
    ~sigpipe_guard() {
      if (!was_pending) {
        sigset_t pending_set;
        sigemptyset(&pending_set);
        ::sigpending(&pending_set);
        if (sigismember(&pending_set, SIGPIPE) == 1) {
          const timespec zero{0, 0};
          while (::sigtimedwait(&pipe_set, nullptr, &zero) == -1 && errno == EINTR) {
          }
        }
      }
      ::pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
    }
    sigpipe_guard(const sigpipe_guard&) = delete;
    sigpipe_guard& operator=(const sigpipe_guard&) = delete;
    sigset_t pipe_set{}, old_set{};
    bool was_pending = false;
  };

  static connection_options validated(connection_options o) {
    if (o.unix_socket.empty() && (o.port < 1 || o.port > 65535))
      throw std::invalid_argument{"redis::connection: port must be in 1..65535"};
    if (o.connect_timeout <= duration::zero())
      throw std::invalid_argument{"redis::connection: connect_timeout must be > 0"};
    if (o.command_timeout <= duration::zero())
      throw std::invalid_argument{"redis::connection: command_timeout must be > 0"};
    if (o.reconnect_backoff < duration::zero())
      throw std::invalid_argument{"redis::connection: reconnect_backoff must be >= 0"};
    if (o.max_reconnect_backoff < o.reconnect_backoff)
      throw std::invalid_argument{"redis::connection: max_reconnect_backoff must be >= reconnect_backoff"};
    return o;
  }

  static timeval to_timeval(duration d) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    return timeval{static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
  }

  std::string& sha_of(const script& s) {
    for (auto& [source, sha] : shas_)
      if (source == s.source.data()) return sha;
    return shas_.emplace_back(s.source.data(), std::string{}).second;
  }

  // Drops the context and starts (or lengthens) the backoff; throws.
  [[noreturn]] void fail(const std::string& what) {
    ctx_.reset();
    const auto now = std::chrono::steady_clock::now();
    retry_at_ = now + backoff_;
    backoff_ = std::min(options_.max_reconnect_backoff, std::max(backoff_ * 2, duration{1}));
    throw error{error_kind::connection, what};
  }

  void connect_locked() {
    if (std::chrono::steady_clock::now() < retry_at_)
      throw error{error_kind::connection, "not connected (reconnecting after a failure, backing off)"};
    const auto tv = to_timeval(options_.connect_timeout);
    redisContext* c = options_.unix_socket.empty() ? redisConnectWithTimeout(options_.host.c_str(), options_.port, tv)
                                                   : redisConnectUnixWithTimeout(options_.unix_socket.c_str(), tv);
    if (!c) fail("cannot allocate a context");
    ctx_.reset(c);
    if (c->err) fail(std::string{"connect: "} + c->errstr);
    if (redisSetTimeout(c, to_timeval(options_.command_timeout)) != REDIS_OK) fail("cannot set the command timeout");
    for (auto& entry : shas_) entry.second.clear();  // perhaps a restarted server
    if (!options_.password.empty()) {
      const std::string_view with_user[] = {"AUTH", options_.user, options_.password};
      const std::string_view without[] = {"AUTH", options_.password};
      auto r = options_.user.empty() ? raw_command(without, 2) : raw_command(with_user, 3);
      if (r->type == REDIS_REPLY_ERROR) fail("AUTH: " + std::string{r->str, r->len});
    }
    backoff_ = options_.reconnect_backoff;
  }

  reply raw_command(const std::string_view* args, std::size_t n) {
    std::vector<const char*> argv(n);
    std::vector<std::size_t> lengths(n);
    for (std::size_t i = 0; i < n; ++i) {
      argv[i] = args[i].data();
      lengths[i] = args[i].size();
    }
    redisReply* r = nullptr;
    {
      const sigpipe_guard guard;  // a write to a dead server must fail, not kill the process
      r = static_cast<redisReply*>(redisCommandArgv(ctx_.get(), static_cast<int>(n), argv.data(), lengths.data()));
    }
    if (!r) fail(std::string{"command failed: "} + (ctx_->errstr[0] ? ctx_->errstr : "connection lost"));
    return reply{r};
  }

  reply command_locked(const std::string_view* args, std::size_t n) {
    if (!ctx_) connect_locked();
    return raw_command(args, n);
  }

  const connection_options options_;
  mutable std::mutex mutex_;
  std::unique_ptr<redisContext, context_deleter> ctx_;
  std::vector<std::pair<const char*, std::string>> shas_;  // script source address -> SHA1 on this server
  std::chrono::steady_clock::time_point retry_at_{};
  duration backoff_;
  std::uint64_t reloads_ = 0;
};

namespace detail {

// Both scripts: KEYS[1] the state, KEYS[2] the key's hold; ARGV interval
// (ns), burst, n, and the caller's time as seconds and nanoseconds (empty:
// the server's TIME). Lua numbers are doubles, exact to 2^53: times are kept
// as (seconds, nanoseconds) pairs and the arithmetic is done relative to
// now, where every value stays below 2^53 ns (the window is capped at 2^52
// ns, 52 days). Reply: {1, 0} granted, {0, retry_after_ns} refused.
inline constexpr std::string_view time_lua = R"(
local s, ns
if ARGV[4] == '' then
  local t = redis.call('TIME')
  s = tonumber(t[1]); ns = tonumber(t[2]) * 1000
else
  s = tonumber(ARGV[4]); ns = tonumber(ARGV[5])
end
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local tau = interval * limit
local far = -(tau + 4e9)
-- (es, ens) relative to now, in ns; anything older than the window is `far`
local function rel(es, ens)
  local ds = tonumber(es) - s
  if ds * 1e9 < far then return far end
  return ds * 1e9 + (tonumber(ens) - ns)
end
local function abs(d)
  local total = ns + d
  local q = math.floor(total / 1e9)
  return s + q, total - q * 1e9
end
local held = far
local h = redis.call('HMGET', KEYS[2], 's', 'n')
if h[1] then held = rel(h[1], h[2]) end
)";

// Token bucket: the hash holds the time the bucket is (or was) empty; it
// holds (now - empty) / interval tokens, at most burst. Taking n moves that
// time n intervals later; a hold puts it at (hold end - interval).
inline constexpr std::string_view token_bucket_lua = R"(
local d = -tau
local e = redis.call('HMGET', KEYS[1], 's', 'n')
if e[1] then d = math.max(rel(e[1], e[2]), -tau) end
d = math.max(d, held - interval)
local nxt = d + n * interval
if nxt > 0 then return {0, nxt} end
local es, ens = abs(nxt)
redis.call('HSET', KEYS[1], 's', string.format('%d', es), 'n', string.format('%d', ens))
redis.call('PEXPIRE', KEYS[1], math.floor((nxt + tau) / 1e6) + 2)
return {1, 0}
)";

// Sliding window: a list of the last burst grant times, oldest first; n
// permits are free once the n-th oldest of the burst slots (empty slots
// first) is a window old, and not before a hold ends.
inline constexpr std::string_view sliding_window_lua = R"(
local len = redis.call('LLEN', KEYS[1])
if len > 0 then
  local last = redis.call('LINDEX', KEYS[1], -1)
  local ls, lns = string.match(last, '^(-?%d+):(%d+)$')
  local d = rel(ls, lns)
  if d > 0 then s, ns = abs(d) ; held = held - d end
end
local free = far
local missing = limit - len
if n > missing then
  local v = redis.call('LINDEX', KEYS[1], n - missing - 1)
  local vs, vns = string.match(v, '^(-?%d+):(%d+)$')
  free = rel(vs, vns) + tau
end
free = math.max(free, held)
if free > 0 then return {0, free} end
local stamp = string.format('%d:%d', s, ns)
local items = {}
for i = 1, n do items[i] = stamp end
redis.call('RPUSH', KEYS[1], unpack(items))
redis.call('LTRIM', KEYS[1], -limit, -1)
redis.call('PEXPIRE', KEYS[1], math.floor(tau / 1e6) + 2)
return {1, 0}
)";

// Hold: ARGV wait (ns), then the time as above. Holds only extend.
inline constexpr std::string_view hold_lua = R"(
local s, ns
if ARGV[2] == '' then
  local t = redis.call('TIME')
  s = tonumber(t[1]); ns = tonumber(t[2]) * 1000
else
  s = tonumber(ARGV[2]); ns = tonumber(ARGV[3])
end
local wait = tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 's', 'n')
if h[1] and (tonumber(h[1]) - s) * 1e9 + (tonumber(h[2]) - ns) >= wait then return 0 end
local total = ns + wait
local q = math.floor(total / 1e9)
redis.call('HSET', KEYS[1], 's', string.format('%d', s + q), 'n', string.format('%d', total - q * 1e9))
redis.call('PEXPIRE', KEYS[1], math.floor(wait / 1e6) + 2)
return 1
)";

inline const std::string& token_bucket_source() {
  static const std::string s = std::string{time_lua} + std::string{token_bucket_lua};
  return s;
}
inline const std::string& sliding_window_source() {
  static const std::string s = std::string{time_lua} + std::string{sliding_window_lua};
  return s;
}

// The longest window (burst / rate) and hold a Redis limiter accepts: 2^52
// ns (~52 days), so that the script's doubles stay exact.
inline constexpr std::int64_t max_redis_window_ns = std::int64_t{1} << 52;

}  // namespace detail

/// What a decision does when Redis fails.
enum class on_failure : std::uint8_t {
  raise,   ///< throw the redis::error (the policy turns it into the call's failure)
  reject,  ///< fail closed: refuse, with retry_after = failure_retry_after
  local    ///< fail open: decide on a local limiter at the quota / expected_instances (per tenant)
};

/// How a Redis rate limiter is configured.
struct limiter_options {
  resilience::limiter_options limit{};     ///< rate and burst of the fleet-wide quota; algorithm token_bucket or
                                           ///< sliding_window (max_partitions: local fallback tenants)
  std::string prefix = "resilience:rl:";   ///< namespace of every Redis key this limiter uses
  on_failure failure = on_failure::raise;  ///< what a decision does when Redis fails
  std::uint32_t expected_instances = 1;    ///< on_failure::local: the local limit is the quota divided by this; >= 1
  duration failure_retry_after = std::chrono::seconds{1};  ///< on_failure::reject: the refusal's retry_after; >= 0
  /// Test mode: the script takes the time from this limiter's clock (e.g. a
  /// manual_clock) instead of the server's TIME. Every process sharing a key
  /// must then share that time line. Key expiry still runs on server time.
  bool use_caller_clock = false;
};

/// A fleet-wide rate limit: one key (with per-tenant partitions) whose state
/// lives in Redis, decided atomically on the server. Same decisions and
/// retry_after as a local limiter with the same options (without leasing,
/// exact). Thread-safe; any number of these objects, in any processes,
/// naming the same key and prefix share one quota.
class rate_limiter {
 public:
  /// Limits `key` through `conn`; `clk` is read only with use_caller_clock
  /// (and by the local fallback and the policy's waits). Throws
  /// std::invalid_argument naming a bad field.
  rate_limiter(std::shared_ptr<connection> conn, std::string key, limiter_options options, clock_ref clk = {})
      : conn_{std::move(conn)}, key_{std::move(key)}, options_{validated(std::move(options))}, clock_{std::move(clk)} {
    if (!conn_) throw std::invalid_argument{"redis::rate_limiter: connection must not be null"};
    const auto shape = resilience::detail::shape_of(options_.limit);
    interval_ = std::to_string(shape.interval);
    burst_ = std::to_string(shape.limit);
    if (options_.failure == on_failure::local) {
      auto local = options_.limit;
      local.requests_per_second /= options_.expected_instances;
      local.burst_size = std::max<std::int64_t>(1, local.burst_size / options_.expected_instances);
      fallback_ = std::make_unique<resilience::rate_limiter>(clock_);
      fallback_->configure(key_, local);
    }
  }

  /// Takes n permits of the key's own budget now, or says how long until it could.
  rate_limit_decision try_acquire(std::uint32_t n = 1) const { return try_acquire(std::string_view{}, n); }
  /// Takes n permits of `tenant`'s budget (an empty tenant: the key's own).
  rate_limit_decision try_acquire(std::string_view tenant, std::uint32_t n = 1) const {
    if (static_cast<std::int64_t>(n) > options_.limit.burst_size)
      throw std::invalid_argument{"redis::rate_limiter '" + key_ + "': n (" + std::to_string(n) +
                                  ") exceeds burst_size (" + std::to_string(options_.limit.burst_size) +
                                  "); it could never be granted"};
    if (n == 0) return {true, duration::zero()};
    try {
      const auto state = state_key(tenant);
      const auto hold = hold_key();
      const auto count = std::to_string(n);
      const auto [sec, nsec] = time_args();
      const script& s = options_.limit.algorithm == rate_limit_algorithm::token_bucket ? token_bucket_script()
                                                                                       : sliding_window_script();
      auto r = conn_->eval(s, {state, hold}, {interval_, burst_, count, sec, nsec});
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_INTEGER ||
          r->element[1]->type != REDIS_REPLY_INTEGER)
        throw error{error_kind::reply, "unexpected reply from the rate limit script"};
      if (r->element[0]->integer == 1) return {true, duration::zero()};
      return {false, duration{r->element[1]->integer}};
    } catch (const error&) {
      switch (options_.failure) {
        case on_failure::raise: throw;
        case on_failure::reject: return {false, options_.failure_retry_after};
        case on_failure::local:
          return tenant.empty() ? fallback_->try_acquire(key_, n) : fallback_->try_acquire(key_, tenant, n);
      }
      throw;
    }
  }

  /// Holds back every permit of the key, all tenants, in every process, for
  /// `wait` (an upstream's Retry-After; at most ~52 days): a bucket grants
  /// its first permit when the hold ends, a window then grants what it
  /// allows. Holds only extend. Throws redis::error when Redis fails (then
  /// the local fallback, if any, is held too).
  void hold(duration wait) const {
    const auto w = std::clamp<std::int64_t>(wait.count(), 0, detail::max_redis_window_ns);
    if (fallback_) fallback_->hold(key_, duration{w});
    const auto [sec, nsec] = time_args();
    conn_->eval(hold_script(), {hold_key()}, {std::to_string(w), sec, nsec});
  }

  /// The Redis key of `tenant`'s state (empty: the key's own).
  std::string state_key(std::string_view tenant = {}) const {
    std::string k = options_.prefix;
    k.append(options_.limit.algorithm == rate_limit_algorithm::token_bucket ? "tb:" : "sw:");
    k.append(std::to_string(key_.size())).append(":").append(key_).append(":").append(tenant);
    return k;
  }
  /// The Redis key of the key's hold.
  std::string hold_key() const { return options_.prefix + "hold:" + std::to_string(key_.size()) + ":" + key_; }

  /// The key.
  const std::string& key() const noexcept { return key_; }
  /// The options in force.
  const limiter_options& options() const noexcept { return options_; }
  /// The clock (use_caller_clock's time, the fallback's and the policy's waits).
  const clock_ref& clock() const noexcept { return clock_; }
  /// The connection.
  connection& conn() const noexcept { return *conn_; }

 private:
  static const script& token_bucket_script() {
    static const script s{detail::token_bucket_source()};
    return s;
  }
  static const script& sliding_window_script() {
    static const script s{detail::sliding_window_source()};
    return s;
  }
  static const script& hold_script() {
    static const script s{detail::hold_lua};
    return s;
  }

  limiter_options validated(limiter_options o) const {
    resilience::detail::validate(o.limit, "redis::rate_limiter: key", key_);
    if (o.limit.algorithm != rate_limit_algorithm::token_bucket &&
        o.limit.algorithm != rate_limit_algorithm::sliding_window)
      throw std::invalid_argument{"redis::rate_limiter '" + key_ +
                                  "': limit.algorithm must be token_bucket or sliding_window"};
    const auto shape = resilience::detail::shape_of(o.limit);
    if (static_cast<double>(shape.interval) * static_cast<double>(shape.limit) >
        static_cast<double>(detail::max_redis_window_ns))
      throw std::invalid_argument{"redis::rate_limiter '" + key_ +
                                  "': limit.requests_per_second is too small for limit.burst_size (the window must be "
                                  "under 2^52 ns, ~52 days)"};
    if (o.prefix.empty()) throw std::invalid_argument{"redis::rate_limiter '" + key_ + "': prefix must not be empty"};
    if (o.expected_instances < 1)
      throw std::invalid_argument{"redis::rate_limiter '" + key_ + "': expected_instances must be >= 1"};
    if (o.failure_retry_after < duration::zero())
      throw std::invalid_argument{"redis::rate_limiter '" + key_ + "': failure_retry_after must be >= 0"};
    return o;
  }

  // The caller's time as (seconds, nanoseconds in [0, 1e9)), or two empty strings (the server's TIME).
  std::pair<std::string, std::string> time_args() const {
    if (!options_.use_caller_clock) return {};
    const auto t = clock_.now().time_since_epoch().count();
    auto sec = t / 1'000'000'000;
    auto nsec = t % 1'000'000'000;
    if (nsec < 0) {
      nsec += 1'000'000'000;
      --sec;
    }
    return {std::to_string(sec), std::to_string(nsec)};
  }

  std::shared_ptr<connection> conn_;
  std::string key_;
  limiter_options options_;
  clock_ref clock_;
  std::string interval_, burst_;
  std::unique_ptr<resilience::rate_limiter> fallback_;
};

/// How a leased_rate_limiter leases.
struct lease_options {
  std::uint32_t max_lease = 100;  ///< most permits taken from Redis in one round trip; 1..limit.burst_size
  duration lease_period = std::chrono::milliseconds{
      10};  ///< the lease size aims at one round trip per this long at this process's own rate; > 0
  duration lease_ttl =
      std::chrono::seconds{1};  ///< leased permits not spent within this long are dropped (never spent late); > 0
};

/// A redis::rate_limiter spent locally: a round trip takes a lease of k
/// permits for a tenant (k adapting to this process's own rate of that
/// tenant, up to max_lease), and the next k - 1 decisions take no round
/// trip (a mutex and a hash lookup). Every permit spent was granted by
/// Redis first, so nothing is counted twice; the cost is timing: permits
/// leased but unspent in one process are missing to the others until they
/// are spent or dropped (lease_ttl). The overshoot bound: over any interval,
/// the permits spent by all processes are at most what the strict limiter
/// would grant over it plus the leases unspent at its start, at most
/// (processes) x max_lease per tenant. Thread-safe; the limiter must outlive it.
class leased_rate_limiter {
 public:
  /// Leases from `limiter`. Throws std::invalid_argument naming a bad field.
  explicit leased_rate_limiter(const rate_limiter& limiter, lease_options options = {})
      : limiter_{&limiter}, options_{validated(limiter, options)} {}

  /// Takes n permits of the key's own budget.
  rate_limit_decision try_acquire(std::uint32_t n = 1) const { return try_acquire(std::string_view{}, n); }
  /// Takes n permits of `tenant`'s budget: from the local lease, or from a
  /// new lease (one round trip; when Redis refuses the lease, n alone is asked for).
  rate_limit_decision try_acquire(std::string_view tenant, std::uint32_t n = 1) const {
    if (n == 0) return {true, duration::zero()};
    const auto now = limiter_->clock().now();
    std::lock_guard lock{mutex_};
    auto& p = pool_of(tenant);
    if (p.permits > 0 && now - p.leased_at > options_.lease_ttl) {
      dropped_ += static_cast<std::uint64_t>(p.permits);
      p.permits = 0;
    }
    if (p.permits >= n) {
      p.permits -= n;
      return {true, duration::zero()};
    }
    // A new lease: k from this tenant's rate since the last one.
    if (p.leases > 0) {
      const auto dt = now - p.leased_at;
      const std::uint64_t cap = std::min<std::uint64_t>(options_.max_lease, 2 * std::uint64_t{p.k});
      const double wanted = dt <= duration::zero() ? static_cast<double>(cap)
                                                   : std::ceil(static_cast<double>(p.k) *
                                                               static_cast<double>(options_.lease_period.count()) /
                                                               static_cast<double>(dt.count()));
      p.k = static_cast<std::uint32_t>(std::clamp<double>(wanted, 1.0, static_cast<double>(cap)));
    }
    const std::uint32_t k = std::max(p.k, n);
    dropped_ += static_cast<std::uint64_t>(p.permits);  // a partial remainder would split n across two leases: dropped
    p.permits = 0;
    auto d = limiter_->try_acquire(tenant, k);
    std::uint32_t got = k;
    if (!d && k > n) {
      d = limiter_->try_acquire(tenant, n);
      got = n;
    }
    if (!d) return d;
    ++p.leases;
    p.leased_at = now;
    p.permits = got - n;
    return d;
  }

  /// Holds the key (redis::rate_limiter::hold) and drops this process's leases.
  void hold(duration wait) const {
    {
      std::lock_guard lock{mutex_};
      for (auto& [tenant, p] : pools_) {
        dropped_ += static_cast<std::uint64_t>(p.permits);
        p.permits = 0;
      }
    }
    limiter_->hold(wait);
  }

  /// The size of `tenant`'s next lease.
  std::uint32_t lease_size(std::string_view tenant = {}) const {
    std::lock_guard lock{mutex_};
    const auto it = pools_.find(tenant);
    return it == pools_.end() ? 1 : it->second.k;
  }
  /// Leased permits not spent yet (all tenants).
  std::uint64_t unspent() const {
    std::lock_guard lock{mutex_};
    std::uint64_t n = 0;
    for (const auto& [tenant, p] : pools_) n += static_cast<std::uint64_t>(p.permits);
    return n;
  }
  /// Leased permits dropped unspent (lease_ttl passed, a hold, or a remainder too small for a request).
  std::uint64_t dropped() const {
    std::lock_guard lock{mutex_};
    return dropped_;
  }
  /// The limiter leased from.
  const rate_limiter& limiter() const noexcept { return *limiter_; }

 private:
  struct pool {
    std::int64_t permits = 0;
    std::uint32_t k = 1;
    std::uint64_t leases = 0;
    time_point leased_at{};
  };

  static lease_options validated(const rate_limiter& l, lease_options o) {
    if (o.max_lease < 1 || static_cast<std::int64_t>(o.max_lease) > l.options().limit.burst_size)
      throw std::invalid_argument{"redis::leased_rate_limiter '" + l.key() +
                                  "': max_lease must be in 1..limit.burst_size"};
    if (o.lease_period <= duration::zero())
      throw std::invalid_argument{"redis::leased_rate_limiter '" + l.key() + "': lease_period must be > 0"};
    if (o.lease_ttl <= duration::zero())
      throw std::invalid_argument{"redis::leased_rate_limiter '" + l.key() + "': lease_ttl must be > 0"};
    return o;
  }

  // Under the mutex. At most max_partitions pools: beyond, the empty ones go (their k restarts at 1).
  pool& pool_of(std::string_view tenant) const {
    if (auto it = pools_.find(tenant); it != pools_.end()) return it->second;
    if (pools_.size() >= limiter_->options().limit.max_partitions)
      std::erase_if(pools_, [](const auto& e) { return e.second.permits == 0; });
    return pools_.try_emplace(std::string{tenant}).first->second;
  }

  const rate_limiter* limiter_;
  lease_options options_;
  mutable std::mutex mutex_;
  mutable std::unordered_map<std::string, pool, resilience::detail::sv_hash, std::equal_to<>> pools_;
  mutable std::uint64_t dropped_ = 0;
};

/// Options of the redis::rate_limit policy.
struct rate_limit_options {
  duration max_wait = duration::zero();  ///< wait up to this long for a permit (never past the call's deadline);
                                         ///< default: reject at once
  bool per_tenant = true;                ///< use the call's tenant as a partition of the key
};

/// A policy for resilient<>: takes a permit of a fleet-wide limit before the
/// call, or rejects it with rate_limited_kind (retry_after, the key, the
/// tenant), like resilience::rate_limit. With max_wait it sleeps (on the
/// limiter's clock) until the retry_after the server gave and asks again,
/// as long as that fits in the wait. A redis::error (on_failure::raise)
/// becomes the call's failure (an exception in the outcome). The limiter
/// must outlive the policy.
class rate_limit {
 public:
  /// Limits by `limiter`.
  explicit rate_limit(const rate_limiter& limiter, rate_limit_options options = {})
      : limiter_{&limiter}, options_{validated(options)} {}

  template <class Next>
  auto execute(call_context& ctx, Next&& next) const {
    using T = typename std::invoke_result_t<Next&, call_context&>::value_type;
    const std::string_view tenant = options_.per_tenant ? ctx.tenant : std::string_view{};
    const auto& clk = limiter_->clock();
    const auto deadline =
        saturating_add(clk.now(), std::min(options_.max_wait, std::max(ctx.remaining(), duration::zero())));
    rate_limit_decision d;
    try {
      for (;;) {
        d = limiter_->try_acquire(tenant, 1);
        if (d) break;
        const auto now = clk.now();
        if (now >= deadline || d.retry_after > deadline - now) break;
        if (!clk.sleep_until(now + d.retry_after, ctx.stop))
          return outcome<T>{rejection{.kind = &cancelled_kind, .source = limiter_->key()}};
      }
    } catch (const error&) {
      return outcome<T>{std::current_exception()};
    }
    if (d) return next(ctx);
    return outcome<T>{rejection{
        .kind = &rate_limited_kind, .retry_after = d.retry_after, .source = limiter_->key(), .detail = tenant}};
  }

  /// The key.
  std::string_view key() const noexcept { return limiter_->key(); }
  /// The limiter's clock (a pipeline's clock must be the same).
  const clock_ref& clock() const noexcept { return limiter_->clock(); }

 private:
  static rate_limit_options validated(rate_limit_options o) {
    if (o.max_wait < duration::zero()) throw std::invalid_argument{"redis::rate_limit: max_wait must be >= 0"};
    return o;
  }
  const rate_limiter* limiter_;
  rate_limit_options options_;
};

/// How a shared_breaker shares its breaker's openings.
struct shared_breaker_options {
  std::string prefix = "resilience:cb:";  ///< namespace of the Redis key (<prefix><breaker name>)
  duration poll_interval =
      std::chrono::milliseconds{100};  ///< at most one round trip per this long (on the breaker's clock); > 0
};

/// Shares one circuit breaker's openings across processes by a short poll:
/// when this process's breaker opens, it stores <prefix><name> in Redis for
/// its break_duration; a process that finds the key (set by another) while
/// its own breaker is closed isolates its breaker, and resets it once the
/// key is gone. Each process still counts its own failures, but a reset
/// after a shared opening clears its window. Bound: another process learns
/// of an opening within poll_interval of its next call (it polls only when
/// called). A policy for resilient<> in place of the breaker; Redis failures
/// are ignored (the breaker then works alone). Copies share the state.
class shared_breaker {
 public:
  /// Shares `breaker` (a handle: copies share its state) through `conn`.
  /// Throws std::invalid_argument naming a bad field.
  shared_breaker(std::shared_ptr<connection> conn, circuit_breaker breaker, shared_breaker_options options = {})
      : s_{std::make_shared<shared>(std::move(conn), std::move(breaker), validated(std::move(options)))} {}

  /// Polls Redis (at most once per poll_interval): publishes this breaker's
  /// opening or applies another process's. Called by execute before each call.
  void sync() const {
    auto& st = *s_;
    const auto now = resilience::detail::ns(st.breaker.clock().now());
    auto due = st.next_poll.load(std::memory_order_relaxed);
    if (now < due ||
        !st.next_poll.compare_exchange_strong(due, now + st.options.poll_interval.count(), std::memory_order_relaxed))
      return;
    std::lock_guard lock{st.mutex};
    try {
      const auto state = st.breaker.state();
      if (state == circuit_state::open && !st.applied) {
        const auto ms = std::max<std::int64_t>(
            1, std::chrono::duration_cast<std::chrono::milliseconds>(st.breaker.options().break_duration).count());
        st.conn->command({"SET", st.key, st.id, "PX", std::to_string(ms)});
        return;
      }
      auto r = st.conn->command({"GET", st.key});
      const bool remote = r->type == REDIS_REPLY_STRING && std::string_view{r->str, r->len} != st.id;
      if (remote && !st.applied && state == circuit_state::closed) {
        st.breaker.isolate();
        st.applied = true;
      } else if (!remote && st.applied) {
        st.breaker.reset();
        st.applied = false;
      }
    } catch (const error&) {
      // Redis down: the breaker decides alone.
    }
  }

  template <class Next>
  auto execute(call_context& ctx, Next&& next) const {
    sync();
    return s_->breaker.execute(ctx, std::forward<Next>(next));
  }

  /// The breaker shared.
  const circuit_breaker& breaker() const noexcept { return s_->breaker; }
  /// True while this breaker is isolated because another process's opened.
  bool held_by_another() const {
    std::lock_guard lock{s_->mutex};
    return s_->applied;
  }
  /// The Redis key.
  const std::string& key() const noexcept { return s_->key; }
  /// The breaker's clock (a pipeline's clock must be the same).
  const clock_ref& clock() const noexcept { return s_->breaker.clock(); }

 private:
  struct shared {
    shared(std::shared_ptr<connection> c, circuit_breaker b, shared_breaker_options o)
        : conn{std::move(c)}, breaker{std::move(b)}, options{std::move(o)}, key{options.prefix + breaker.name()} {
      if (!conn) throw std::invalid_argument{"redis::shared_breaker: connection must not be null"};
      id = std::to_string(::getpid()) + ":" + std::to_string(reinterpret_cast<std::uintptr_t>(this));
    }
    std::shared_ptr<connection> conn;
    circuit_breaker breaker;
    shared_breaker_options options;
    std::string key, id;
    std::atomic<std::int64_t> next_poll{std::numeric_limits<std::int64_t>::min()};
    std::mutex mutex;
    bool applied = false;
  };
  static shared_breaker_options validated(shared_breaker_options o) {
    if (o.poll_interval <= duration::zero())
      throw std::invalid_argument{"redis::shared_breaker: poll_interval must be > 0"};
    if (o.prefix.empty()) throw std::invalid_argument{"redis::shared_breaker: prefix must not be empty"};
    return o;
  }
  std::shared_ptr<shared> s_;
};

}  // namespace redis
}  // namespace v1
}  // namespace resilience
