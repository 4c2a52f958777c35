// resilience/redis.hpp: fleet-wide rate limits on Redis — one quota shared by
// every process that names the same key. Optional: this header needs hiredis
// (Debian libhiredis-dev; CMake target resilience::redis); no other header
// of the library includes it.
//
//   auto redis = std::make_shared<resilience::redis::connection>(
//       resilience::redis::connection_options{.unix_socket = "/run/redis.sock"});
//   resilience::redis::rate_limiter limits{redis, "factor_api",
//                                          {.limit = {.requests_per_second = 10, .burst_size = 20}}};
//   if (auto d = limits.try_acquire("acme"); !d) wait(d.retry_after);  // the fleet's budget for "acme"
//   resilience::resilient fetch{fetch_factor, resilience::redis::rate_limit{limits}};
//
// Each decision is one EVALSHA of a Lua script (loaded once per connection
// with SCRIPT LOAD, loaded again after a NOSCRIPT reply), so it is atomic on
// the server and exact: token bucket and sliding window, with the same
// integer-nanosecond arithmetic and the same retry_after as the local
// limiters (limiter.hpp). Time comes from the server (TIME), so hosts with
// skewed clocks share one time line; limiter_options::use_caller_clock makes
// the script use the limiter's clock instead (tests on a manual_clock).
// Keys: <prefix>{<tag>}<tb|sw>:<key length>:<key>:<tenant> and
// <prefix>{<tag>}hold:<key length>:<key>; the length makes every (key,
// tenant) pair its own key, whatever bytes the names hold, and the tag (a
// hash of the key, never a brace) puts all of a limiter's keys in one
// cluster slot, so its two-key scripts run on Redis Cluster. Names reach
// Redis only as KEYS and ARGV, never in script text. A key expires
// (PEXPIRE) once it is back to its idle state (a full bucket, an empty
// window), so an idle tenant costs Redis nothing.
//
// Also here: leased_rate_limiter (k permits per round trip, spent locally;
// bounded overshoot) and shared_breaker (a breaker's openings shared by a
// short poll).
//
// Failures of Redis (connection refused or lost, a timeout, AUTH refused, an
// error reply such as WRONGTYPE) are redis::error exceptions out of
// connection; each limiter chooses what a decision does then (on_failure):
// raise the exception (default), reject (fail closed), or fall back to a
// local limiter at the quota divided by the expected number of instances
// (fail open). A call's deadline bounds its round trip. Every mode change
// (remote, local, closed) is an event and a metric.
#pragma once

#include <hiredis/hiredis.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
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
#include "metric_snapshot.hpp"
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
  std::string user{};              ///< ACL user for AUTH user password (Redis 6+); empty: AUTH with the password alone
  std::string password{};          ///< empty: no AUTH
  duration connect_timeout = std::chrono::seconds{1};  ///< for connecting; > 0
  duration command_timeout = std::chrono::seconds{1};  ///< for each command's round trip; > 0
  duration reconnect_backoff = std::chrono::milliseconds{
      100};  ///< after a failure, commands fail at once (no connect attempt) for this long, doubling per failure; >= 0
  duration max_reconnect_backoff = std::chrono::seconds{5};  ///< the cap of that doubling; >= reconnect_backoff
  /// Measures the reconnect backoff and the round trips (metrics); a test
  /// passes a manual_clock to step through the backoff. Socket timeouts
  /// (connect_timeout, command_timeout, a call's budget) are the kernel's, in real time.
  clock_ref clock{};
};

/// What went wrong talking to Redis.
enum class error_kind : std::uint8_t {
  connection,  ///< no connection: refused, lost, or waiting out the reconnect backoff
  reply,       ///< the server answered with an error (WRONGTYPE, OOM, a script error...)
  timeout,     ///< no answer within command_timeout or the call's budget (its deadline)
  auth         ///< AUTH was refused (wrong password or user)
};

/// "connection", "reply", "timeout" or "auth".
constexpr std::string_view to_string(error_kind k) noexcept {
  switch (k) {
    case error_kind::connection: return "connection";
    case error_kind::reply: return "reply";
    case error_kind::timeout: return "timeout";
    case error_kind::auth: return "auth";
  }
  return "unknown";
}

/// A failure talking to Redis (the connection is dropped and re-made later unless it is a `reply` error).
class error : public std::runtime_error {
 public:
  error(error_kind kind, const std::string& what) : std::runtime_error{"redis: " + what}, kind_{kind} {}
  /// What went wrong.
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

/// No budget: a command waits up to command_timeout.
inline constexpr duration no_budget = duration::max();

/// One synchronous hiredis connection, shared by threads (a mutex around the
/// context: one command at a time). Connects on first use; after a failure
/// it drops the context and commands throw error{connection} at once until
/// the backoff has passed (on options.clock), then the next command
/// connects again (and AUTHs). Each command may carry a budget (the time
/// left before its caller's deadline): the socket then waits at most that
/// long, so no caller waits past its deadline for Redis. A timeout drops
/// the connection (a late reply would answer the next command); one caused
/// by a caller's short budget starts no backoff, since the server may be fine.
class connection {
 public:
  /// Validates the options (std::invalid_argument naming the field); does not connect yet.
  explicit connection(connection_options options)
      : options_{validated(std::move(options))}, backoff_{options_.reconnect_backoff} {}
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection() = default;

  /// Runs one command (its arguments, binary-safe) within `budget`; throws
  /// error on failure or on an error reply.
  reply command(std::initializer_list<std::string_view> args, duration budget = no_budget) {
    const auto deadline = deadline_of(budget);
    std::lock_guard lock{mutex_};
    auto r = command_locked(args.begin(), args.size(), deadline);
    if (r->type == REDIS_REPLY_ERROR) throw error{error_kind::reply, std::string{r->str, r->len}};
    return r;
  }

  /// Runs `s` with EVALSHA on keys and args within `budget`, loading it
  /// (SCRIPT LOAD) when this connection has not yet or the server says
  /// NOSCRIPT (it restarted, or SCRIPT FLUSH). Throws error on failure or
  /// on an error reply.
  reply eval(const script& s, std::initializer_list<std::string_view> keys,
             std::initializer_list<std::string_view> args, duration budget = no_budget) {
    const auto deadline = deadline_of(budget);
    std::lock_guard lock{mutex_};
    for (int attempt = 0;; ++attempt) {
      auto& sha = sha_of(s);
      if (sha.empty()) {
        const std::string_view load[] = {"SCRIPT", "LOAD", s.source};
        auto r = command_locked(load, 3, deadline);
        if (r->type != REDIS_REPLY_STRING)
          throw error{error_kind::reply,
                      "SCRIPT LOAD: " + std::string{r->str ? r->str : "unexpected reply", r->str ? r->len : 16}};
        sha.assign(r->str, r->len);
        ++loads_;
      }
      argv_.clear();
      const auto count = std::to_string(keys.size());
      argv_.insert(argv_.end(), {std::string_view{"EVALSHA"}, std::string_view{sha}, std::string_view{count}});
      argv_.insert(argv_.end(), keys);
      argv_.insert(argv_.end(), args);
      auto r = command_locked(argv_.data(), argv_.size(), deadline);
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

  /// Times a script was loaded again after NOSCRIPT.
  std::uint64_t script_reloads() const {
    std::lock_guard lock{mutex_};
    return reloads_;
  }
  /// Times a script was loaded (SCRIPT LOAD), on first use, after a reconnect or after NOSCRIPT.
  std::uint64_t script_loads() const {
    std::lock_guard lock{mutex_};
    return loads_;
  }
  /// Connections made (the first one and every reconnect).
  std::uint64_t connects() const {
    std::lock_guard lock{mutex_};
    return connects_;
  }
  /// True while a context is open (the last command did not fail on the connection).
  bool connected() const {
    std::lock_guard lock{mutex_};
    return ctx_ != nullptr;
  }
  /// True while commands fail at once, waiting out the reconnect backoff (lock-free).
  bool backing_off() const noexcept {
    const auto until = retry_at_ns_.load(std::memory_order_relaxed);
    return until != 0 && resilience::detail::ns(options_.clock.now()) < until;
  }
  /// The options in force.
  const connection_options& options() const noexcept { return options_; }
  /// The clock of the backoff and of round-trip times.
  const clock_ref& clock() const noexcept { return options_.clock; }

 private:
  struct context_deleter {
    void operator()(redisContext* c) const noexcept { redisFree(c); }
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
    if (!o.user.empty() && o.password.empty())
      throw std::invalid_argument{"redis::connection: password must be set when user is"};
    return o;
  }

  static timeval to_timeval(duration d) {
    // A socket timeout of zero means "wait forever": the shortest is 1 us.
    const auto us = std::max<std::int64_t>(1, std::chrono::duration_cast<std::chrono::microseconds>(d).count());
    return timeval{static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
  }

  time_point deadline_of(duration budget) const {
    return budget >= no_budget ? no_deadline : saturating_add(options_.clock.now(), budget);
  }

  // How long the next socket operation may wait: `limit`, or less when the
  // caller's deadline is nearer (then *by_budget is set). Throws
  // error{timeout} when the deadline has passed (nothing sent: the
  // connection stays).
  duration wait_for(duration limit, time_point deadline, bool* by_budget) const {
    *by_budget = false;
    if (deadline == no_deadline) return limit;
    const auto left = saturating_sub(deadline, options_.clock.now());
    if (left <= duration::zero()) throw error{error_kind::timeout, "the call's deadline passed before Redis answered"};
    if (left >= limit) return limit;
    *by_budget = true;
    return left;
  }

  std::string& sha_of(const script& s) {
    for (auto& [source, sha] : shas_)
      if (source == s.source.data()) return sha;
    return shas_.emplace_back(s.source.data(), std::string{}).second;
  }

  // Drops the context and, unless only a caller's budget ran out, starts
  // (or lengthens) the backoff; throws.
  [[noreturn]] void fail(error_kind kind, const std::string& what, bool backoff = true) {
    ctx_.reset();
    if (backoff) {
      const auto until = saturating_add(options_.clock.now(), backoff_);
      retry_at_ns_.store(std::max<std::int64_t>(1, resilience::detail::ns(until)), std::memory_order_relaxed);
      backoff_ = std::min(options_.max_reconnect_backoff, std::max(backoff_ * 2, duration{1}));
    }
    throw error{kind, what};
  }

  void connect_locked(time_point deadline) {
    if (backing_off()) throw error{error_kind::connection, "not connected (reconnecting after a failure, backing off)"};
    bool by_budget = false;
    const auto tv = to_timeval(wait_for(options_.connect_timeout, deadline, &by_budget));
    redisContext* c = options_.unix_socket.empty() ? redisConnectWithTimeout(options_.host.c_str(), options_.port, tv)
                                                   : redisConnectUnixWithTimeout(options_.unix_socket.c_str(), tv);
    if (!c) fail(error_kind::connection, "cannot allocate a context");
    ctx_.reset(c);
    if (c->err) {
      const bool timed_out = std::string_view{c->errstr}.find("timed out") != std::string_view::npos;
      fail(timed_out ? error_kind::timeout : error_kind::connection, std::string{"connect: "} + c->errstr,
           !(timed_out && by_budget));
    }
    socket_timeout_ = duration::zero();  // none set on this context yet
    ++connects_;
    for (auto& entry : shas_) entry.second.clear();  // perhaps a restarted server
    if (!options_.password.empty()) {
      const std::string_view with_user[] = {"AUTH", options_.user, options_.password};
      const std::string_view without[] = {"AUTH", options_.password};
      auto r = options_.user.empty() ? raw_command(without, 2, deadline) : raw_command(with_user, 3, deadline);
      if (r->type == REDIS_REPLY_ERROR) fail(error_kind::auth, "AUTH: " + std::string{r->str, r->len});
    }
    backoff_ = options_.reconnect_backoff;
    retry_at_ns_.store(0, std::memory_order_relaxed);
  }

  reply raw_command(const std::string_view* args, std::size_t n, time_point deadline) {
    bool by_budget = false;
    const auto wait = wait_for(options_.command_timeout, deadline, &by_budget);
    if (wait != socket_timeout_) {  // two setsockopt calls, only when the wait changes
      if (redisSetTimeout(ctx_.get(), to_timeval(wait)) != REDIS_OK)
        fail(error_kind::connection, "cannot set the socket timeout");
      socket_timeout_ = wait;
    }
    argv_ptr_.resize(n);
    lengths_.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      argv_ptr_[i] = args[i].data();
      lengths_[i] = args[i].size();
    }
    // hiredis writes with write(), which raises SIGPIPE on a socket the
    // server closed; the request is sent here with send(MSG_NOSIGNAL)
    // instead (no signal, no signal-mask calls), then hiredis reads the reply.
    char* request = nullptr;
    const int length = redisFormatCommandArgv(&request, static_cast<int>(n), argv_ptr_.data(), lengths_.data());
    if (length < 0) fail(error_kind::connection, "cannot format the command (out of memory)");
    int saved_errno = 0;
    std::size_t sent = 0;
    while (sent < static_cast<std::size_t>(length)) {
      const auto k = ::send(ctx_->fd, request + sent, static_cast<std::size_t>(length) - sent, MSG_NOSIGNAL);
      if (k > 0) {
        sent += static_cast<std::size_t>(k);
      } else if (k < 0 && errno == EINTR) {
        continue;
      } else {
        saved_errno = k < 0 ? errno : EPIPE;
        break;
      }
    }
    redisFreeCommand(request);
    redisReply* r = nullptr;
    if (sent == static_cast<std::size_t>(length)) {
      void* out = nullptr;
      errno = 0;
      if (redisGetReply(ctx_.get(), &out) == REDIS_OK) r = static_cast<redisReply*>(out);
      saved_errno = errno;
    } else {
      ctx_->err = REDIS_ERR_IO;
      std::snprintf(ctx_->errstr, sizeof ctx_->errstr, "send: %s", std::strerror(saved_errno));
    }
    if (!r) {
      const bool timed_out = ctx_->err == REDIS_ERR_IO &&
                             (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK || saved_errno == ETIMEDOUT);
      const std::string what = ctx_->errstr[0] ? ctx_->errstr : "connection lost";
      if (timed_out)
        fail(error_kind::timeout,
             by_budget ? "no answer before the call's deadline" : "no answer within command_timeout (" + what + ")",
             !by_budget);
      fail(error_kind::connection, "command failed: " + what);
    }
    return reply{r};
  }

  reply command_locked(const std::string_view* args, std::size_t n, time_point deadline) {
    if (!ctx_) connect_locked(deadline);
    return raw_command(args, n, deadline);
  }

  const connection_options options_;
  mutable std::mutex mutex_;
  std::unique_ptr<redisContext, context_deleter> ctx_;
  std::vector<std::pair<const char*, std::string>> shas_;  // script source address -> SHA1 on this server
  std::vector<std::string_view> argv_;                     // reused: a command allocates nothing once warm
  std::vector<const char*> argv_ptr_;
  std::vector<std::size_t> lengths_;
  std::atomic<std::int64_t> retry_at_ns_{0};  // 0: not backing off; else until then (ns on options.clock)
  duration backoff_;
  duration socket_timeout_ = duration::zero();
  std::uint64_t reloads_ = 0, loads_ = 0, connects_ = 0;
};

namespace detail {

// Every script starts with `local T = <index>` and this prelude: ARGV[T]
// and ARGV[T + 1] are the caller's time as seconds and nanoseconds (both
// empty: the server's TIME), ARGV[T + 2] the expiry margin in ms.
inline constexpr std::string_view time_prelude_lua = R"(
local s, ns
if ARGV[T] == '' then
  local t = redis.call('TIME')
  s = tonumber(t[1]); ns = tonumber(t[2]) * 1000
else
  s = tonumber(ARGV[T]); ns = tonumber(ARGV[T + 1])
end
local margin = tonumber(ARGV[T + 2])
-- A time stored as '<seconds>:<nanoseconds>'
local function stamp(v) return string.match(v, '^(-?%d+):(%d+)$') end
)";

// Both limiter scripts: KEYS[1] the state, KEYS[2] the key's hold; ARGV
// interval (ns), burst, n, then the prelude's three (T = 4). Lua numbers
// are doubles, exact to 2^53: times are kept as (seconds, nanoseconds)
// pairs and the arithmetic is done relative to now, where every value stays
// below 2^53 ns (the window is capped at 2^52 ns, 52 days). Reply: {1, 0}
// granted, {0, retry_after_ns} refused.
inline constexpr std::string_view limiter_lua = R"(
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
local h = redis.call('GET', KEYS[2])
if h then held = rel(stamp(h)) end
)";

// Token bucket: the string holds the time the bucket is (or was) empty; it
// holds (now - empty) / interval tokens, at most burst. Taking n moves that
// time n intervals later; a hold puts it at (hold end - interval).
inline constexpr std::string_view token_bucket_lua = R"(
local d = -tau
local e = redis.call('GET', KEYS[1])
if e then d = math.max(rel(stamp(e)), -tau) end
d = math.max(d, held - interval)
local nxt = d + n * interval
if nxt > 0 then return {0, nxt} end
local es, ens = abs(nxt)
redis.call('SET', KEYS[1], string.format('%d:%d', es, ens), 'PX', math.floor((nxt + tau) / 1e6) + 2 + margin)
return {1, 0}
)";

// Sliding window: a list of the last burst grant times, oldest first; n
// permits are free once the n-th oldest of the burst slots (empty slots
// first) is a window old, and not before a hold ends.
inline constexpr std::string_view sliding_window_lua = R"(
local len = redis.call('LLEN', KEYS[1])
if len > 0 then
  local d = rel(stamp(redis.call('LINDEX', KEYS[1], -1)))
  if d > 0 then s, ns = abs(d) ; held = held - d end
end
local free = far
local missing = limit - len
if n > missing then
  free = rel(stamp(redis.call('LINDEX', KEYS[1], n - missing - 1))) + tau
end
free = math.max(free, held)
if free > 0 then return {0, free} end
local stamp = string.format('%d:%d', s, ns)
local items = {}
for i = 1, n do items[i] = stamp end
redis.call('RPUSH', KEYS[1], unpack(items))
redis.call('LTRIM', KEYS[1], -limit, -1)
redis.call('PEXPIRE', KEYS[1], math.floor(tau / 1e6) + 2 + margin)
return {1, 0}
)";

// Hold: KEYS[1] the hold; ARGV wait (ns), then the prelude's three (T =
// 2). Holds only extend.
inline constexpr std::string_view hold_lua = R"(
local wait = tonumber(ARGV[1])
local h = redis.call('GET', KEYS[1])
if h then
  local hs, hns = stamp(h)
  if (tonumber(hs) - s) * 1e9 + (tonumber(hns) - ns) >= wait then return 0 end
end
local total = ns + wait
local q = math.floor(total / 1e9)
redis.call('SET', KEYS[1], string.format('%d:%d', s + q, total - q * 1e9), 'PX', math.floor(wait / 1e6) + 2 + margin)
return 1
)";

inline const std::string& token_bucket_source() {
  static const std::string s =
      "local T = 4" + std::string{time_prelude_lua} + std::string{limiter_lua} + std::string{token_bucket_lua};
  return s;
}
inline const std::string& sliding_window_source() {
  static const std::string s =
      "local T = 4" + std::string{time_prelude_lua} + std::string{limiter_lua} + std::string{sliding_window_lua};
  return s;
}
inline const std::string& hold_source() {
  static const std::string s = "local T = 2" + std::string{time_prelude_lua} + std::string{hold_lua};
  return s;
}

// The cluster hash tag of a key: 16 hex digits of its FNV-1a hash (never a
// brace, whatever the key holds), so a limiter's state and hold keys share
// one slot.
inline std::string hash_tag(std::string_view key) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : key) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  std::string out(18, '}');
  out[0] = '{';
  for (int i = 0; i < 16; ++i) out[static_cast<std::size_t>(16 - i)] = "0123456789abcdef"[(h >> (4 * i)) & 0xf];
  return out;
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

/// Where a limiter's decisions come from now.
enum class mode : std::uint8_t {
  remote,  ///< Redis decides (the fleet-wide quota)
  local,   ///< Redis failed: the local fallback decides (on_failure::local)
  closed   ///< Redis failed: nothing is granted (on_failure::reject refuses, on_failure::raise throws)
};

/// "remote", "local" or "closed".
constexpr std::string_view to_string(mode m) noexcept {
  switch (m) {
    case mode::remote: return "remote";
    case mode::local: return "local";
    case mode::closed: return "closed";
  }
  return "unknown";
}

/// A Redis limiter's series (redis_*{key}): written when a metrics_registry watches it.
inline constexpr metric_family redis_round_trip_family{
    "redis_round_trip_seconds", metric_type::histogram,
    "Round trips of a Redis rate limiter's decisions (EVALSHA, with a reconnect or script load if one was needed).",
    70};
inline constexpr metric_family redis_decisions_family{
    "redis_decisions_total", metric_type::counter,
    "Decisions of a Redis rate limiter by result (granted, refused), whoever made them.", 71};
inline constexpr metric_family redis_errors_family{
    "redis_errors_total", metric_type::counter, "Failures talking to Redis by kind (connection, reply, timeout, auth).",
    72};
inline constexpr metric_family redis_mode_family{
    "redis_mode", metric_type::gauge, "1 for the mode a Redis rate limiter is in (remote, local, closed), else 0.", 73};
inline constexpr metric_family redis_mode_changes_family{
    "redis_mode_changes_total", metric_type::counter, "Mode changes of a Redis rate limiter, by the mode entered.", 74};
inline constexpr metric_family redis_lease_size_family{
    "redis_lease_size", metric_type::gauge, "The permits a leased Redis rate limiter took in its last lease.", 75};
inline constexpr metric_family redis_leases_family{
    "redis_leases_total", metric_type::counter, "Leases a leased Redis rate limiter took (one round trip each).", 76};
inline constexpr metric_family redis_leased_permits_family{"redis_leased_permits_total", metric_type::counter,
                                                           "Permits a leased Redis rate limiter took from Redis.", 77};
inline constexpr metric_family redis_lease_unspent_family{
    "redis_lease_unspent_permits", metric_type::gauge,
    "Permits leased from Redis and not spent yet (the overshoot this process may add).", 78};
inline constexpr metric_family redis_lease_dropped_family{
    "redis_lease_dropped_permits_total", metric_type::counter,
    "Leased permits dropped unspent (lease_ttl passed, a hold, or a remainder too small).", 79};
inline const metric_families redis_metric_families{
    redis_round_trip_family,    redis_decisions_family,    redis_errors_family, redis_mode_family,
    redis_mode_changes_family,  redis_lease_size_family,   redis_leases_family, redis_leased_permits_family,
    redis_lease_unspent_family, redis_lease_dropped_family};

namespace detail {
inline constexpr event_metric redis_mode_changed_metrics[] = {
    {&redis_mode_changes_family, {{{"key", "source"}, {"to", "to"}}}, nullptr, "redis_rate_limiter"}};
inline constexpr event_metric redis_error_metrics[] = {
    {&redis_errors_family, {{{"key", "source"}, {"kind", "kind"}}}, nullptr, "redis_rate_limiter"}};
}  // namespace detail

/// A Redis limiter's mode changed. Source: its key. Fields: from, to (to_string(mode)); error (what failed, when
/// leaving remote).
inline constexpr event_kind redis_mode_changed_event{
    "redis_mode_changed", log_level::warning, {.source_key = "key", .metrics = detail::redis_mode_changed_metrics}};
/// A decision's round trip to Redis failed. Source: the limiter's key. Fields: kind (to_string(error_kind)), error.
inline constexpr event_kind redis_error_event{
    "redis_error", log_level::warning, {.source_key = "key", .metrics = detail::redis_error_metrics}};

/// How a Redis rate limiter is configured.
struct limiter_options {
  resilience::limiter_options limit{};     ///< rate and burst of the fleet-wide quota; algorithm token_bucket or
                                           ///< sliding_window (max_partitions: local fallback tenants)
  std::string prefix = "resilience:rl:";   ///< namespace of every Redis key this limiter uses; no '{' or '}'
  on_failure failure = on_failure::raise;  ///< what a decision does when Redis fails
  std::uint32_t expected_instances = 1;    ///< on_failure::local: the local limit is the quota divided by this; >= 1
  duration failure_retry_after = std::chrono::seconds{1};  ///< on_failure::reject: the refusal's retry_after; >= 0
  /// Test mode: the script takes the time from this limiter's clock (e.g. a
  /// manual_clock) instead of the server's TIME. Every process sharing a key
  /// must then share that time line. Key expiry still runs on server time
  /// (see expiry_margin).
  bool use_caller_clock = false;
  /// Added to every key's idle expiry (server time, whole ms; >= 0). Zero in
  /// production: a key goes as soon as it is idle. With use_caller_clock, a
  /// time line that runs slower than the server's would see its state expire
  /// early: a test sets this to the longest its virtual time may lag.
  duration expiry_margin = duration::zero();
};

/// What a Redis limiter counted so far.
struct limiter_stats {
  mode current = mode::remote;         ///< where decisions come from now
  std::uint64_t granted = 0;           ///< decisions that granted, whoever made them
  std::uint64_t refused = 0;           ///< decisions that refused, whoever made them
  std::uint64_t errors[4] = {};        ///< failed round trips, by error_kind
  std::uint64_t mode_changes[3] = {};  ///< mode changes, by the mode entered
};

namespace detail {

// Histogram bounds for Redis round trips: 50 us (a local unix socket) to 1 s.
inline std::vector<double> round_trip_buckets() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.25, 1};
}

// What a limiter counts, shared with a metrics registry that watches it.
struct limiter_state {
  explicit limiter_state(std::string k) : key{std::move(k)} {}
  const std::string key;
  event_hub hub;
  duration_histogram round_trips{round_trip_buckets()};
  std::atomic<std::uint64_t> granted{0}, refused{0};
  std::array<std::atomic<std::uint64_t>, 4> errors{};
  std::array<std::atomic<std::uint64_t>, 3> mode_changes{};
  std::atomic<std::uint8_t> current{0};

  void count(bool allowed) noexcept { (allowed ? granted : refused).fetch_add(1, std::memory_order_relaxed); }

  // Enters `to`; the thread that changes it counts and reports the change.
  void enter(mode to, const error* why) noexcept {
    auto from = current.load(std::memory_order_relaxed);
    if (from == static_cast<std::uint8_t>(to)) return;
    if (!current.compare_exchange_strong(from, static_cast<std::uint8_t>(to), std::memory_order_relaxed)) return;
    mode_changes[static_cast<std::size_t>(to)].fetch_add(1, std::memory_order_relaxed);
    resilience::detail::emit(&hub, [&] {
      event e{redis_mode_changed_event, key};
      e.with("from", to_string(static_cast<mode>(from))).with("to", to_string(to));
      if (why != nullptr) e.with_text("error", why->what());
      if (to == mode::remote) e.with_severity(log_level::info);
      return e;
    });
  }

  void failed(const error& e) noexcept {
    errors[static_cast<std::size_t>(e.kind())].fetch_add(1, std::memory_order_relaxed);
    resilience::detail::emit(&hub, [&] {
      event ev{redis_error_event, key};
      ev.with("kind", to_string(e.kind())).with_text("error", e.what());
      return ev;
    });
  }

  limiter_stats stats() const noexcept {
    limiter_stats s;
    s.current = static_cast<mode>(current.load(std::memory_order_relaxed));
    s.granted = granted.load(std::memory_order_relaxed);
    s.refused = refused.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < 4; ++i) s.errors[i] = errors[i].load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < 3; ++i) s.mode_changes[i] = mode_changes[i].load(std::memory_order_relaxed);
    return s;
  }

  void collect(metric_snapshot& s) const {
    using enum metric_type;
    if (!s.cover("redis_rate_limiter", key)) return;
    const auto st = stats();
    round_trips.collect(s, redis_round_trip_family.name, redis_round_trip_family.help, {{"key", key}});
    s.add(redis_decisions_family.name, counter, {}, {{"key", key}, {"result", "granted"}},
          static_cast<double>(st.granted));
    s.add(redis_decisions_family.name, counter, {}, {{"key", key}, {"result", "refused"}},
          static_cast<double>(st.refused));
    for (std::size_t i = 0; i < 4; ++i)
      s.add(redis_errors_family.name, counter, {}, {{"key", key}, {"kind", to_string(static_cast<error_kind>(i))}},
            static_cast<double>(st.errors[i]));
    for (std::size_t i = 0; i < 3; ++i) {
      const auto m = to_string(static_cast<mode>(i));
      s.add(redis_mode_family.name, gauge, {}, {{"key", key}, {"mode", m}},
            static_cast<std::size_t>(st.current) == i ? 1.0 : 0.0);
      s.add(redis_mode_changes_family.name, counter, {}, {{"key", key}, {"to", m}},
            static_cast<double>(st.mode_changes[i]));
    }
  }
};

}  // namespace detail

/// A fleet-wide rate limit: one key (with per-tenant partitions) whose state
/// lives in Redis, decided atomically on the server. Same decisions and
/// retry_after as a local limiter with the same options (without leasing,
/// exact). Thread-safe; any number of these objects, in any processes,
/// naming the same key and prefix share one quota.
class rate_limiter {
 public:
  /// Limits `key` through `conn`; `clk` is read only with use_caller_clock
  /// (and by the local fallback, the deadlines of try_acquire and the
  /// policy's waits). Throws std::invalid_argument naming a bad field.
  rate_limiter(std::shared_ptr<connection> conn, std::string key, limiter_options options, clock_ref clk = {})
      : conn_{std::move(conn)}, key_{std::move(key)}, options_{validated(std::move(options))}, clock_{std::move(clk)} {
    if (!conn_) throw std::invalid_argument{"redis::rate_limiter: connection must not be null"};
    const auto shape = resilience::detail::shape_of(options_.limit);
    interval_ = std::to_string(shape.interval);
    burst_ = std::to_string(shape.limit);
    margin_ = std::to_string(std::chrono::ceil<std::chrono::milliseconds>(options_.expiry_margin).count());
    tag_ = detail::hash_tag(key_);
    hold_key_ = options_.prefix + tag_ + "hold:" + std::to_string(key_.size()) + ":" + key_;
    st_ = std::make_shared<detail::limiter_state>(key_);
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
    return decide(tenant, n, no_budget);
  }
  /// Like try_acquire(tenant, n), but the round trip to Redis ends by
  /// `deadline` (on this limiter's clock): a Redis that does not answer in
  /// time is a failure of kind timeout, handled as on_failure says.
  rate_limit_decision try_acquire(std::string_view tenant, std::uint32_t n, time_point deadline) const {
    return decide(tenant, n, deadline == no_deadline ? no_budget : saturating_sub(deadline, clock_.now()));
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
    conn_->eval(hold_script(), {hold_key_}, {std::to_string(w), sec, nsec, margin_});
  }

  /// The Redis key of `tenant`'s state (empty: the key's own):
  /// <prefix>{<hash of key>}<tb|sw>:<key length>:<key>:<tenant>.
  std::string state_key(std::string_view tenant = {}) const {
    std::string k;
    state_key_into(k, tenant);
    return k;
  }
  /// The Redis key of the key's hold: <prefix>{<hash of key>}hold:<key length>:<key>.
  const std::string& hold_key() const noexcept { return hold_key_; }

  /// The key.
  const std::string& key() const noexcept { return key_; }
  /// The options in force.
  const limiter_options& options() const noexcept { return options_; }
  /// The clock (use_caller_clock's time, the fallback's, deadlines and the policy's waits).
  const clock_ref& clock() const noexcept { return clock_; }
  /// The connection.
  connection& conn() const noexcept { return *conn_; }
  /// Where decisions come from now.
  mode current_mode() const noexcept { return static_cast<mode>(st_->current.load(std::memory_order_relaxed)); }
  /// A snapshot of its counters.
  limiter_stats stats() const noexcept { return st_->stats(); }
  /// This limiter's event hub (redis_mode_changed, redis_error).
  event_hub& events() const noexcept { return st_->hub; }

  /// Its series, labelled key: round trips (histogram), decisions by
  /// result, errors by kind, the mode (one gauge per mode) and mode changes.
  friend void collect_metrics(const rate_limiter& l, metric_snapshot& s) { l.st_->collect(s); }
  /// metrics_registry::watch(redis::rate_limiter): the counters stay alive
  /// with the registry (the limiter need not); another limiter with the
  /// same key throws std::invalid_argument naming it.
  friend void watch_metrics(const rate_limiter& l, metric_watch& w) {
    if (!w.claim("redis rate limiter", l.key_, l.st_.get())) return;
    auto keep = l.st_;
    w.collect([keep](metric_snapshot& s) { keep->collect(s); });
    w.count_events(keep->hub);
    w.keep(keep);
  }

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
    static const script s{detail::hold_source()};
    return s;
  }

  void state_key_into(std::string& k, std::string_view tenant) const {
    k.assign(options_.prefix).append(tag_);
    k.append(options_.limit.algorithm == rate_limit_algorithm::token_bucket ? "tb:" : "sw:");
    char len[24];
    const auto r = std::to_chars(len, len + sizeof len, key_.size());
    k.append(len, r.ptr).append(":").append(key_).append(":").append(tenant);
  }

  rate_limit_decision decide(std::string_view tenant, std::uint32_t n, duration budget) const {
    if (static_cast<std::int64_t>(n) > options_.limit.burst_size)
      throw std::invalid_argument{"redis::rate_limiter '" + key_ + "': n (" + std::to_string(n) +
                                  ") exceeds burst_size (" + std::to_string(options_.limit.burst_size) +
                                  "); it could never be granted"};
    if (n == 0) return {true, duration::zero()};
    // Redis known down (the connection waits out its backoff): no exception
    // thrown and caught per decision, so the fallback costs what a local limiter costs.
    if (options_.failure != on_failure::raise && conn_->backing_off()) [[unlikely]]
      return on_down(tenant, n);
    try {
      thread_local std::string state;
      state_key_into(state, tenant);
      char count[12];
      const auto end = std::to_chars(count, count + sizeof count, n).ptr;
      const auto [sec, nsec] = time_args();
      const script& s = options_.limit.algorithm == rate_limit_algorithm::token_bucket ? token_bucket_script()
                                                                                       : sliding_window_script();
      const auto& rt_clock = conn_->clock();
      const auto start = rt_clock.now();
      auto r = conn_->eval(
          s, {state, hold_key_},
          {interval_, burst_, std::string_view{count, static_cast<std::size_t>(end - count)}, sec, nsec, margin_},
          budget);
      st_->round_trips.observe(rt_clock.now() - start);
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_INTEGER ||
          r->element[1]->type != REDIS_REPLY_INTEGER)
        throw error{error_kind::reply, "unexpected reply from the rate limit script"};
      if (st_->current.load(std::memory_order_relaxed) != 0) [[unlikely]]
        st_->enter(mode::remote, nullptr);
      const bool allowed = r->element[0]->integer == 1;
      st_->count(allowed);
      if (allowed) return {true, duration::zero()};
      return {false, duration{r->element[1]->integer}};
    } catch (const error& e) {
      st_->failed(e);
      st_->enter(options_.failure == on_failure::local ? mode::local : mode::closed, &e);
      if (options_.failure == on_failure::raise) throw;
      return on_down(tenant, n);
    }
  }

  // The decision without Redis (reject or local; raise throws).
  rate_limit_decision on_down(std::string_view tenant, std::uint32_t n) const {
    rate_limit_decision d{false, options_.failure_retry_after};
    switch (options_.failure) {
      case on_failure::raise:
        throw error{error_kind::connection, "not connected (reconnecting after a failure, backing off)"};
      case on_failure::reject: break;
      case on_failure::local:
        d = tenant.empty() ? fallback_->try_acquire(key_, n) : fallback_->try_acquire(key_, tenant, n);
        break;
    }
    st_->count(d.allowed);
    return d;
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
    if (o.prefix.find_first_of("{}") != std::string::npos)
      throw std::invalid_argument{"redis::rate_limiter '" + key_ +
                                  "': prefix must not hold '{' or '}' (the keys' cluster hash tag follows it)"};
    if (o.expected_instances < 1)
      throw std::invalid_argument{"redis::rate_limiter '" + key_ + "': expected_instances must be >= 1"};
    if (o.failure_retry_after < duration::zero())
      throw std::invalid_argument{"redis::rate_limiter '" + key_ + "': failure_retry_after must be >= 0"};
    if (o.expiry_margin < duration::zero() || o.expiry_margin > duration{detail::max_redis_window_ns})
      throw std::invalid_argument{"redis::rate_limiter '" + key_ + "': expiry_margin must be in [0, 2^52 ns]"};
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
  std::string interval_, burst_, margin_, tag_, hold_key_;
  std::shared_ptr<detail::limiter_state> st_;
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
      : limiter_{&limiter}, s_{std::make_shared<state>(limiter.key(), validated(limiter, options))} {}

  /// Takes n permits of the key's own budget.
  rate_limit_decision try_acquire(std::uint32_t n = 1) const { return try_acquire(std::string_view{}, n); }
  /// Takes n permits of `tenant`'s budget: from the local lease, or from a
  /// new lease (one round trip; when Redis refuses the lease, n alone is asked for).
  rate_limit_decision try_acquire(std::string_view tenant, std::uint32_t n = 1) const {
    return try_acquire(tenant, n, no_deadline);
  }
  /// Like try_acquire(tenant, n); a round trip ends by `deadline` (the limiter's clock).
  rate_limit_decision try_acquire(std::string_view tenant, std::uint32_t n, time_point deadline) const {
    if (n == 0) return {true, duration::zero()};
    const auto now = limiter_->clock().now();
    auto& st = *s_;
    std::lock_guard lock{st.mutex};
    auto& p = pool_of(tenant);
    if (p.permits > 0 && now - p.leased_at > st.options.lease_ttl) {
      st.dropped += static_cast<std::uint64_t>(p.permits);
      st.unspent -= p.permits;
      p.permits = 0;
    }
    if (p.permits >= n) {
      p.permits -= n;
      st.unspent -= n;
      return {true, duration::zero()};
    }
    // A new lease: k from this tenant's rate since the last one.
    if (p.leases > 0) {
      const auto dt = now - p.leased_at;
      const std::uint64_t cap = std::min<std::uint64_t>(st.options.max_lease, 2 * std::uint64_t{p.k});
      const double wanted = dt <= duration::zero() ? static_cast<double>(cap)
                                                   : std::ceil(static_cast<double>(p.k) *
                                                               static_cast<double>(st.options.lease_period.count()) /
                                                               static_cast<double>(dt.count()));
      p.k = static_cast<std::uint32_t>(std::clamp<double>(wanted, 1.0, static_cast<double>(cap)));
    }
    const std::uint32_t k = std::max(p.k, n);
    st.dropped += static_cast<std::uint64_t>(p.permits);  // a partial remainder would split n across two leases
    st.unspent -= p.permits;
    p.permits = 0;
    auto d = limiter_->try_acquire(tenant, k, deadline);
    std::uint32_t got = k;
    if (!d && k > n) {
      d = limiter_->try_acquire(tenant, n, deadline);
      got = n;
    }
    if (!d) return d;
    ++p.leases;
    p.leased_at = now;
    p.permits = got - n;
    st.unspent += p.permits;
    ++st.leases;
    st.leased += got;
    st.last_lease = got;
    return d;
  }

  /// Holds the key (redis::rate_limiter::hold) and drops this process's leases.
  void hold(duration wait) const {
    {
      std::lock_guard lock{s_->mutex};
      for (auto& [tenant, p] : s_->pools) {
        s_->dropped += static_cast<std::uint64_t>(p.permits);
        p.permits = 0;
      }
      s_->unspent = 0;
    }
    limiter_->hold(wait);
  }

  /// The size of `tenant`'s next lease.
  std::uint32_t lease_size(std::string_view tenant = {}) const {
    std::lock_guard lock{s_->mutex};
    const auto it = s_->pools.find(tenant);
    return it == s_->pools.end() ? 1 : it->second.k;
  }
  /// Leased permits not spent yet (all tenants).
  std::uint64_t unspent() const {
    std::lock_guard lock{s_->mutex};
    return static_cast<std::uint64_t>(s_->unspent);
  }
  /// Leased permits dropped unspent (lease_ttl passed, a hold, or a remainder too small for a request).
  std::uint64_t dropped() const {
    std::lock_guard lock{s_->mutex};
    return s_->dropped;
  }
  /// Leases taken (round trips that granted).
  std::uint64_t leases() const {
    std::lock_guard lock{s_->mutex};
    return s_->leases;
  }
  /// Permits taken from Redis in all leases.
  std::uint64_t leased() const {
    std::lock_guard lock{s_->mutex};
    return s_->leased;
  }
  /// The limiter leased from.
  const rate_limiter& limiter() const noexcept { return *limiter_; }

  /// Its series, labelled key: the last lease's size, leases and permits
  /// leased, permits unspent and dropped.
  friend void collect_metrics(const leased_rate_limiter& l, metric_snapshot& s) { l.s_->collect(s); }
  /// metrics_registry::watch(leased_rate_limiter); the limiter leased from is watched on its own.
  friend void watch_metrics(const leased_rate_limiter& l, metric_watch& w) {
    if (!w.claim("redis leased rate limiter", l.s_->key, l.s_.get())) return;
    auto keep = l.s_;
    w.collect([keep](metric_snapshot& s) { keep->collect(s); });
    w.keep(keep);
  }

 private:
  struct pool {
    std::int64_t permits = 0;
    std::uint32_t k = 1;
    std::uint64_t leases = 0;
    time_point leased_at{};
  };

  struct state {
    state(std::string k, lease_options o) : key{std::move(k)}, options{o} {}
    const std::string key;
    const lease_options options;
    mutable std::mutex mutex;
    std::unordered_map<std::string, pool, resilience::detail::sv_hash, std::equal_to<>> pools;
    std::int64_t unspent = 0;
    std::uint64_t dropped = 0, leases = 0, leased = 0;
    std::uint32_t last_lease = 0;

    void collect(metric_snapshot& s) const {
      using enum metric_type;
      if (!s.cover("redis_leased_rate_limiter", key)) return;
      std::lock_guard lock{mutex};
      s.add(redis_lease_size_family.name, gauge, {}, {{"key", key}}, last_lease);
      s.add(redis_leases_family.name, counter, {}, {{"key", key}}, static_cast<double>(leases));
      s.add(redis_leased_permits_family.name, counter, {}, {{"key", key}}, static_cast<double>(leased));
      s.add(redis_lease_unspent_family.name, gauge, {}, {{"key", key}}, static_cast<double>(unspent));
      s.add(redis_lease_dropped_family.name, counter, {}, {{"key", key}}, static_cast<double>(dropped));
    }
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
    auto& pools = s_->pools;
    if (auto it = pools.find(tenant); it != pools.end()) return it->second;
    if (pools.size() >= limiter_->options().limit.max_partitions)
      std::erase_if(pools, [](const auto& e) { return e.second.permits == 0; });
    return pools.try_emplace(std::string{tenant}).first->second;
  }

  const rate_limiter* limiter_;
  std::shared_ptr<state> s_;
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
/// as long as that fits in the wait. Each round trip ends by the call's
/// deadline (a timeout error past it). A redis::error (on_failure::raise)
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
        d = limiter_->try_acquire(tenant, 1, ctx.deadline);
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
