// resilience/detail/limiter_state.hpp: the four rate-limit algorithms as
// plain state machines over integer nanoseconds. Users name limiter.hpp and
// rate_limit.hpp, never this header.
//
// Every algorithm answers one question, reserve(now, n, deadline): can n
// permits be had no later than `deadline`, and if not, how long until a
// try_acquire(n) would succeed? Token and leaky bucket are one atomic
// compare-and-swap on a single 64-bit time; fixed window is one CAS on a
// packed (window index, count) word; the sliding log takes a mutex. Any
// state can be reshaped in place (rate, burst, algorithm) under traffic.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "../clock.hpp"
#include "../limiter_options.hpp"

namespace resilience {
inline namespace v1 {

namespace detail {

inline constexpr std::int64_t ns_per_second = 1'000'000'000;
// The longest burst window accepted: keeps every sum of times far from int64 overflow.
inline constexpr std::int64_t max_window_ns = std::int64_t{100} * 365 * 24 * 3600 * ns_per_second;

// Validates a config; throws std::invalid_argument naming the field, with
// "<who> '<name>': " in front (just "<who>: " without a name). Builds no
// string unless it throws: configure() of a known key allocates nothing.
inline void validate(const limiter_options& c, std::string_view who, std::string_view name = {}) {
  auto fail = [&](std::string_view what) {
    std::string message{who};
    if (!name.empty()) message.append(" '").append(name).append("'");
    message.append(": ").append(what);
    throw std::invalid_argument{message};
  };
  if (!(c.requests_per_second > 0.0) || !std::isfinite(c.requests_per_second))
    fail("requests_per_second must be a finite number > 0");
  if (c.requests_per_second > 1e9) fail("requests_per_second must be <= 1e9 (one permit per nanosecond)");
  if (c.burst_size < 1 || c.burst_size > std::int64_t{std::numeric_limits<std::uint32_t>::max()})
    fail("burst_size must be between 1 and 4294967295");
  if (c.algorithm == rate_limit_algorithm::sliding_window && c.burst_size > (std::int64_t{1} << 20))
    fail("burst_size must be <= 1048576 for sliding_window (it keeps one timestamp per permit)");
  if (static_cast<int>(c.algorithm) > static_cast<int>(rate_limit_algorithm::sliding_window))
    fail("algorithm is not one of the four rate_limit_algorithm values");
  const double interval = std::round(1e9 / c.requests_per_second);
  if (interval * static_cast<double>(c.burst_size) > static_cast<double>(max_window_ns))
    fail("requests_per_second is too small for burst_size (burst_size / requests_per_second must be under 100 years)");
  if (c.max_partitions < 1) fail("max_partitions must be >= 1");
}

// What a limiter_state needs of a config: the algorithm, the burst and the
// emission interval 1/rate in ns (rounded to the nearest ns, at least 1).
struct limiter_shape {
  rate_limit_algorithm algorithm = rate_limit_algorithm::token_bucket;
  std::int64_t limit = 1;
  std::int64_t interval = 1;
};

inline limiter_shape shape_of(const limiter_options& c) noexcept {
  return {c.algorithm, c.burst_size,
          std::max<std::int64_t>(1, static_cast<std::int64_t>(std::llround(1e9 / c.requests_per_second)))};
}

// The answer of reserve().
struct reservation {
  bool granted = false;
  std::int64_t at = 0;           // when granted: the time (ns) the permits may be used
  std::int64_t retry_after = 0;  // when refused: ns until try_acquire(n) would succeed
  bool final = false;     // refused for good: waiting until the deadline would not help (buckets book ahead or refuse)
  std::int64_t cost = 0;  // when granted by a bucket: the time (ns) the permits took, which refund() gives back
};

// One limiter's state, reconfigured in place (reshape) while other threads
// reserve. Not copyable, not movable: limiters hold it in place (in a
// shared_ptr, a registry entry or a tenant node).
//
// Concurrency. `word_` is the algorithm's 64-bit state (bucket: a time;
// fixed window: packed index and count); readers change it with one CAS.
// The parameters beside it (interval, burst, bias...) are relaxed atomics
// that only a writer (reshape, refund) changes, while it holds the
// algorithm byte set to `writing`:
//   1. it CASes algorithm_ to `writing` (one writer at a time);
//   2. it bumps the word by one, so that a reader that loaded the word
//      earlier fails its CAS;
//   3. it stores the new parameters;
//   4. it publishes the new word (acq_rel), then the algorithm (release).
// A reader acquire-loads the word, then reads the algorithm: `writing`
// sends it to wait; otherwise the parameters it reads are those published
// with that word or newer. Newer ones are harmless because the word only
// ever moves forward: every CAS and every writer step advances it (modulo
// 2^64) by a positive amount, so a value a reader loaded before a
// reconfiguration never comes back, and that reader's CAS fails and retries
// with the new parameters. No ABA, hence exact: a reservation is always
// priced with the parameters in force when it commits. Buckets move forward
// thanks to a bias: the word is time + bias_, and a writer that moves the
// time backwards (a refund, a lower rate with tokens in hand) moves the word
// forward and puts the difference in the bias. (A stale value could only
// come back if the word advanced by exactly 2^64 while one reader was
// preempted between its load and its CAS: centuries of nanoseconds.)
//
// Readers never take a lock and never write anything but the word; they
// wait only while a writer is at work, which is a few loads and stores.
// Reading the algorithm is what they did anyway, so the check is free.
// The sliding window keeps its log behind a mutex; a reshape takes that
// mutex too, then the algorithm byte.
class limiter_state {
 public:
  limiter_state(const limiter_shape& s, std::int64_t now) {
    std::uint64_t word = 0;
    const std::int64_t tau = s.interval * s.limit;
    switch (s.algorithm) {
      // "Empty at now - tau" is a full bucket; "queue drains at now" an empty queue.
      case rate_limit_algorithm::token_bucket: word = static_cast<std::uint64_t>(now - tau); break;
      case rate_limit_algorithm::leaky_bucket: word = static_cast<std::uint64_t>(now); break;
      case rate_limit_algorithm::fixed_window: break;  // window 0 at `now`, empty
      case rate_limit_algorithm::sliding_window: log_.assign(static_cast<std::size_t>(s.limit), long_ago); break;
    }
    store_params({s.algorithm, s.interval, s.limit, tau, now, 0, 0, count_bits_for(s.limit)});
    algorithm_.store(s.algorithm, std::memory_order_relaxed);
    word_.store(word, std::memory_order_release);
  }
  limiter_state(const limiter_state&) = delete;
  limiter_state& operator=(const limiter_state&) = delete;

  // The burst in force (relaxed: a check, not a decision).
  std::int64_t limit() const noexcept { return limit_.load(std::memory_order_relaxed); }

  // Throws when n permits can never be granted at once.
  void check_n(std::uint32_t n, std::string_view who) const {
    const auto limit = this->limit();
    if (static_cast<std::int64_t>(n) > limit)
      throw std::invalid_argument{std::string{who} + ": n (" + std::to_string(n) + ") exceeds burst_size (" +
                                  std::to_string(limit) + "); it could never be granted"};
  }

  // Grants n permits at a time no later than `deadline` (both in ns), or
  // says how long until a try_acquire(n) at `now` would succeed.
  // Inlined into every caller: one try for a single permit (for a bucket,
  // one acquire load, four relaxed loads: algorithm, bias, depth, interval;
  // one CAS), returning directly; the sliding log, which locks, is one call.
  // The rest goes out of line: several permits, a lost CAS, a writer at
  // work.
  [[gnu::always_inline]] reservation reserve(std::int64_t now, std::uint32_t n, std::int64_t deadline) noexcept {
    if (n == 1) [[likely]] {
      auto cur = word_.load(std::memory_order_acquire);
      switch (algorithm_.load(std::memory_order_relaxed)) {
        case rate_limit_algorithm::token_bucket: {
          const auto bias = bias_.load(std::memory_order_relaxed);
          const auto interval = interval_.load(std::memory_order_relaxed);
          const auto next = token_after(time_of(cur, bias), now, tau_.load(std::memory_order_relaxed), interval);
          if (next > deadline) return {false, 0, next - now, true};
          if (word_.compare_exchange_weak(cur, word_of(next, bias), std::memory_order_acq_rel,
                                          std::memory_order_relaxed))
            return {true, std::max(next, now), 0, false, interval};
          break;
        }
        case rate_limit_algorithm::leaky_bucket: {
          const auto bias = bias_.load(std::memory_order_relaxed);
          const auto interval = interval_.load(std::memory_order_relaxed);
          const auto start = std::max(time_of(cur, bias), now);
          if (start > deadline || start - now + interval > tau_.load(std::memory_order_relaxed))
            return {false, 0, start - now, true};
          if (word_.compare_exchange_weak(cur, word_of(start + interval, bias), std::memory_order_acq_rel,
                                          std::memory_order_relaxed))
            return {true, start, 0, false, interval};
          break;
        }
        case rate_limit_algorithm::fixed_window: {
          const auto p = window_params();
          if (now < held_until_.load(std::memory_order_relaxed)) [[unlikely]]
            return held_window(now, cur, 1, p);
          const auto w = window_of(now, cur, p);
          if (w.count + 1 > p.limit) return {false, 0, w.end - now};
          if (word_.compare_exchange_weak(cur, (w.index << p.bits) | static_cast<std::uint64_t>(w.count + 1),
                                          std::memory_order_acq_rel, std::memory_order_relaxed))
            return {true, now, 0};
          break;
        }
        case rate_limit_algorithm::sliding_window: return reserve_sliding(now, n, deadline);
        default: break;
      }
    }
    return reserve_again(now, n, deadline);
  }

  // Gives back permits a bucket reserved for the future but that were never
  // used (a cancelled wait): the time they took (reservation::cost), so the
  // booking is undone exactly even if the limit changed meanwhile. Never
  // earlier than an active hold. Windows grant at once: nothing to give back.
  void refund(std::int64_t cost) noexcept {
    if (cost <= 0) return;
    if (const auto seen = algorithm_.load(std::memory_order_relaxed); seen != writing && !is_bucket(seen)) return;
    const auto a = lock_params();
    if (is_bucket(a)) {
      const auto w = word_.fetch_add(1, std::memory_order_acq_rel) + 1;
      const auto was = time_of(w - 1, bias_.load(std::memory_order_relaxed));
      const auto held = hold_floor(a, interval_.load(std::memory_order_relaxed));
      const auto t = was >= held ? std::max(was - cost, held) : was - cost;
      bias_.store(w + 1 - static_cast<std::uint64_t>(t),
                  std::memory_order_relaxed);  // the word moves forward, the time back
      word_.exchange(w + 1, std::memory_order_acq_rel);
    }
    algorithm_.store(a, std::memory_order_release);
  }

  // Changes the algorithm, burst or rate in place, safely while other threads
  // reserve (see the class comment). What carries over:
  //  - token bucket to token bucket: the tokens in hand, converted to the new
  //    interval (rounded down, capped at the new burst). A bucket empty until
  //    a later instant (permits booked ahead) stays empty until then, and an
  //    active hold keeps the instant of its first permit; the new interval
  //    applies after.
  //  - leaky bucket to leaky bucket: the booked queue (the theoretical
  //    arrival time, the instant of the next permit) stays.
  //  - fixed window to fixed window: the current window keeps its start and
  //    the permits taken in it (capped at the new burst); the new rate sets
  //    its length and that of the windows after it.
  //  - sliding window to sliding window: the log of grant times stays (the
  //    newest burst_size of them if the burst shrinks); only the window
  //    length changes.
  //  - a change of algorithm starts afresh (a full bucket, an empty queue or
  //    window or log), but for an active hold (hold_until).
  // Allocates only when a sliding window's burst changes or a limiter becomes
  // a sliding window (its log), and keeps nothing of the old shape.
  void reshape(const limiter_shape& s, std::int64_t now) {
    std::lock_guard log_lock{
        log_mutex_};  // stable under it: the algorithm (a refund only borrows it), the burst, the log
    auto was = algorithm_.load(std::memory_order_relaxed);
    for (unsigned spins = 0; was == writing;) was = wait_for_writer(spins);
    const bool same = was == s.algorithm;
    // Every allocation before readers are held up.
    std::vector<std::int64_t> log;
    if (s.algorithm == rate_limit_algorithm::sliding_window && (!same || s.limit != limit()))
      log = same ? resized_log(static_cast<std::size_t>(s.limit))
                 : std::vector<std::int64_t>(static_cast<std::size_t>(s.limit), long_ago);

    lock_params();
    const auto cur = word_.fetch_add(1, std::memory_order_acq_rel);  // in-flight CASes fail from here
    const auto bumped = cur + 1;
    const auto old = load_params();
    params p{s.algorithm, s.interval, s.limit,  s.interval * s.limit,
             old.origin,  old.bias,   old.base, count_bits_for(s.limit)};
    auto next = bumped + 1;
    switch (s.algorithm) {
      case rate_limit_algorithm::token_bucket: {
        auto t = now - p.tau;  // fresh: full
        const auto held = held_until_.load(std::memory_order_relaxed);
        if (same) {
          const auto empty_at = time_of(cur, old.bias);
          if (empty_at >= now) {
            t = empty_at;  // empty until the same instant (permits booked ahead)...
            if (held > now && empty_at >= hold_floor(was, old.interval))
              t = empty_at + old.interval - p.interval;  // ...and an active hold keeps the instant of its first permit
          } else {
            const auto elapsed = now - std::max(empty_at, now - old.tau);
            t = now - rescale(elapsed, old.interval, p.interval, p.limit);
          }
        }
        if (held > now)
          t = std::max(t, held - p.interval);  // an active hold outlives any change: first permit at its end
        p.bias = next - static_cast<std::uint64_t>(t);
        break;
      }
      case rate_limit_algorithm::leaky_bucket:
        p.bias = next - static_cast<std::uint64_t>(std::max(
                            {same ? time_of(cur, old.bias) : now, now, held_until_.load(std::memory_order_relaxed)}));
        break;
      case rate_limit_algorithm::fixed_window: {
        // The window `now` falls in keeps its start and its count; the new
        // rate sets its length and that of the windows after it.
        std::int64_t carried = 0;
        p.origin = now;
        if (same) {
          const auto w = window_of(now, cur, old);
          carried = std::min(w.count, p.limit);
          p.origin = w.end - old.tau;
        }
        // The first word after `bumped` with the new layout: the next window index.
        const std::uint64_t index = ((bumped >> p.bits) + 1) & (~std::uint64_t{0} >> p.bits);
        next = (index << p.bits) | static_cast<std::uint64_t>(carried);
        p.base = index;
        break;
      }
      case rate_limit_algorithm::sliding_window:
        if (!log.empty()) {
          log_.swap(log);
          head_ = 0;
          if (!same) last_ = long_ago;
        }
        break;
    }
    if (was == rate_limit_algorithm::sliding_window && !same) {
      log_.swap(log);  // freed on return, after readers are let go
      head_ = 0;
    }
    store_params(p);
    word_.exchange(next, std::memory_order_acq_rel);
    algorithm_.store(s.algorithm, std::memory_order_release);
  }

  // No permit before `until` (ns), e.g. because the upstream said so; holds
  // only ever extend. A bucket puts it in its word (it empties until then:
  // the first permit is due at `until`, then it refills); a window cannot,
  // so window readers check held_until_ themselves and, once it has passed,
  // grant what the window (or the log) allows: a hold never grants a permit
  // the limit would not have. It outlives any reshape, a change of
  // algorithm included.
  void hold_until(std::int64_t until) noexcept {
    auto held = held_until_.load(std::memory_order_relaxed);
    while (held < until && !held_until_.compare_exchange_weak(held, until, std::memory_order_relaxed)) {
    }
    for (unsigned spins = 0;;) {
      auto cur = word_.load(std::memory_order_acquire);
      const auto a = algorithm_.load(std::memory_order_relaxed);
      if (a == writing) {
        wait_for_writer(spins);
        continue;
      }
      if (!is_bucket(a)) return;
      // A token bucket's first token appears one interval after "empty".
      const auto target =
          a == rate_limit_algorithm::token_bucket ? until - interval_.load(std::memory_order_relaxed) : until;
      const auto bias = bias_.load(std::memory_order_relaxed);
      if (time_of(cur, bias) >= target) return;
      if (word_.compare_exchange_strong(cur, word_of(target, bias), std::memory_order_acq_rel,
                                        std::memory_order_acquire))
        return;
    }
  }

  // Permits a try_acquire could take right now: tokens in the bucket, free
  // queue slots (leaky), or what is left of the window.
  double available(std::int64_t now) const noexcept {
    std::lock_guard log_lock{log_mutex_};  // keeps reshape out
    // Optimistic: the word read twice around the parameters, unchanged, with
    // no writer at work, means no writer came in between (the word never
    // returns to a value). Under heavy traffic, hold the writers' byte.
    for (int attempt = 0; attempt < 4; ++attempt) {
      const auto w = word_.load(std::memory_order_acquire);
      const auto p = load_params(std::memory_order_acquire);
      if (p.algorithm == rate_limit_algorithm::sliding_window) return sliding_available(now);
      if (p.algorithm != writing && word_.load(std::memory_order_relaxed) == w)
        return held_window_now(now, p.algorithm) ? 0.0 : available(now, w, p);
    }
    const auto a = lock_params();
    auto p = load_params();
    p.algorithm = a;
    const auto result = held_window_now(now, a) ? 0.0
                        : a == rate_limit_algorithm::sliding_window
                            ? sliding_available(now)
                            : available(now, word_.load(std::memory_order_acquire), p);
    algorithm_.store(a, std::memory_order_release);  // no parameter changed: the word needs no step
    return result;
  }

 private:
  // algorithm_ while a writer changes the parameters (not an algorithm).
  static constexpr auto writing = static_cast<rate_limit_algorithm>(0xff);
  // "Long ago" for the sliding log, yet far enough from INT64_MIN that adding the window cannot overflow.
  static constexpr std::int64_t long_ago = std::numeric_limits<std::int64_t>::min() / 2;

  struct params {
    rate_limit_algorithm algorithm;
    std::int64_t interval;  // 1/rate, ns
    std::int64_t limit;     // burst_size
    std::int64_t tau;       // limit * interval: bucket depth or window length, ns
    std::int64_t origin;    // fixed window: when window `base` starts
    std::uint64_t bias;     // buckets: word - time
    std::uint64_t base;     // fixed window: the masked index of the window starting at origin
    unsigned bits;          // fixed window: count bits in the word
  };

  // The lowest time a bucket's word may hold while the last hold lasts:
  // its first permit is due at held_until_.
  std::int64_t hold_floor(rate_limit_algorithm a, std::int64_t interval) const noexcept {
    const auto held = held_until_.load(std::memory_order_relaxed);
    return a == rate_limit_algorithm::token_bucket ? held - interval : held;
  }

  static bool is_bucket(rate_limit_algorithm a) noexcept {
    return a == rate_limit_algorithm::token_bucket || a == rate_limit_algorithm::leaky_bucket;
  }

  params load_params(std::memory_order o = std::memory_order_relaxed) const noexcept {
    return {algorithm_.load(o), interval_.load(o), limit_.load(o), tau_.load(o),
            origin_.load(o),    bias_.load(o),     base_.load(o),  count_bits_.load(o)};
  }
  // All but the algorithm, which the writer stores last. Release, so that a
  // reader that sees one new value then sees the word moved on (available()'s
  // optimistic read relies on it); free on x86.
  void store_params(const params& p) noexcept {
    constexpr auto r = std::memory_order_release;
    interval_.store(p.interval, r);
    limit_.store(p.limit, r);
    tau_.store(p.tau, r);
    origin_.store(p.origin, r);
    bias_.store(p.bias, r);
    base_.store(p.base, r);
    count_bits_.store(p.bits, r);
  }

  // Takes the writers' byte; returns the algorithm it held.
  rate_limit_algorithm lock_params() const noexcept {
    auto a = algorithm_.load(std::memory_order_relaxed);
    for (unsigned spins = 0;;) {
      if (a == writing) {
        a = wait_for_writer(spins);
        continue;
      }
      if (algorithm_.compare_exchange_weak(a, writing, std::memory_order_acquire, std::memory_order_relaxed)) return a;
    }
  }
  [[gnu::noinline]] rate_limit_algorithm wait_for_writer(unsigned& spins) const noexcept {
    if (++spins > 16) std::this_thread::yield();  // the writer may have been preempted
    return algorithm_.load(std::memory_order_relaxed);
  }

  // A bucket's time from its word, and back.
  static std::int64_t time_of(std::uint64_t word, std::uint64_t bias) noexcept {
    return static_cast<std::int64_t>(word - bias);
  }
  static std::uint64_t word_of(std::int64_t time, std::uint64_t bias) noexcept {
    return static_cast<std::uint64_t>(time) + bias;
  }

  static unsigned count_bits_for(std::int64_t limit) noexcept {
    return static_cast<unsigned>(std::bit_width(static_cast<std::uint64_t>(limit)));
  }

  // tokens (elapsed / from) re-expressed at interval `to`, rounded down and
  // capped at `limit` tokens: a conversion never creates a permit.
  static std::int64_t rescale(std::int64_t elapsed, std::int64_t from, std::int64_t to, std::int64_t limit) noexcept {
    const auto whole = elapsed / from;
    if (whole >= limit) return limit * to;
    const double part =
        std::floor(static_cast<double>(elapsed % from) / static_cast<double>(from) * static_cast<double>(to));
    return whole * to + std::min(static_cast<std::int64_t>(part), to - 1);
  }

  struct attempt_result {
    bool decided;  // false: try again (a lost CAS, a writer at work) or out of line (the sliding log)
    reservation r;
  };

  params window_params() const noexcept {
    constexpr auto rx = std::memory_order_relaxed;
    return {rate_limit_algorithm::fixed_window,
            0,
            limit_.load(rx),
            tau_.load(rx),
            origin_.load(rx),
            0,
            base_.load(rx),
            count_bits_.load(rx)};
  }

  // Token bucket: when it will be empty after `cost` ns worth of tokens are
  // taken (a full bucket was empty at now - tau).
  static std::int64_t token_after(std::int64_t empty_at, std::int64_t now, std::int64_t tau,
                                  std::int64_t cost) noexcept {
    return std::max(empty_at, now - tau) + cost;
  }

  // One try at reserving any n from the word value `cur`, for the CAS
  // algorithms (reserve() inlines the common case of it).
  [[gnu::always_inline]] attempt_result attempt(std::uint64_t cur, std::int64_t now, std::uint32_t n,
                                                std::int64_t deadline) noexcept {
    const auto permits = static_cast<std::int64_t>(n);
    switch (algorithm_.load(std::memory_order_relaxed)) {
      // Token bucket, folly-style: the time the bucket was (or will be)
      // empty; it holds (now - time) / interval tokens, at most burst.
      // Taking n tokens moves that time n intervals later. A time after
      // now is debt taken by waiters who reserved future tokens.
      case rate_limit_algorithm::token_bucket: {
        const auto bias = bias_.load(std::memory_order_relaxed);
        const auto cost = permits * interval_.load(std::memory_order_relaxed);
        const auto next = token_after(time_of(cur, bias), now, tau_.load(std::memory_order_relaxed), cost);
        if (next > deadline) return {true, {false, 0, next - now, true}};
        if (!word_.compare_exchange_weak(cur, word_of(next, bias), std::memory_order_acq_rel,
                                         std::memory_order_relaxed))
          return {false, {}};
        return {true, {true, std::max(next, now), 0, false, cost}};
      }
      // Leaky bucket as a queue (GCRA's virtual scheduling, the time being
      // the theoretical arrival time): permits leave one interval apart, so
      // output is smooth; a waiter may book a slot at most burst_size
      // permits ahead.
      case rate_limit_algorithm::leaky_bucket: {
        const auto interval = interval_.load(std::memory_order_relaxed);
        const auto tau = tau_.load(std::memory_order_relaxed);
        const auto bias = bias_.load(std::memory_order_relaxed);
        const auto cost = permits * interval;
        const auto start = std::max(time_of(cur, bias), now);
        if (start > deadline || start - now + cost > tau) return {true, {false, 0, start - now, true}};
        if (!word_.compare_exchange_weak(cur, word_of(start + cost, bias), std::memory_order_acq_rel,
                                         std::memory_order_relaxed))
          return {false, {}};
        return {true, {true, start, 0, false, cost}};
      }
      case rate_limit_algorithm::fixed_window: {
        const auto p = window_params();
        if (now < held_until_.load(std::memory_order_relaxed)) [[unlikely]]
          return {true, held_window(now, cur, n, p)};
        const auto w = window_of(now, cur, p);
        if (w.count + permits > p.limit) return {true, {false, 0, w.end - now}};
        const auto next = (w.index << p.bits) | static_cast<std::uint64_t>(w.count + permits);
        if (!word_.compare_exchange_weak(cur, next, std::memory_order_acq_rel, std::memory_order_relaxed))
          return {false, {}};
        return {true, {true, now, 0}};
      }
      default: return {false, {}};  // the sliding window (reserve_sliding), or `writing`: a writer is at work
    }
  }

  // All the rest of reserve().
  [[gnu::noinline]] reservation reserve_again(std::int64_t now, std::uint32_t n, std::int64_t deadline) noexcept {
    if (n == 0) return {true, now, 0};
    // A burst lowered below n since the caller checked n: never grantable.
    if (n > 1 && static_cast<std::int64_t>(n) > limit()) return {false, 0, 0, true};
    for (unsigned spins = 0;;) {
      const auto cur = word_.load(std::memory_order_acquire);
      const auto a = algorithm_.load(std::memory_order_relaxed);
      if (a == rate_limit_algorithm::sliding_window) {
        reservation r;
        if (sliding_step(now, n, r)) return r;
      } else if (a == writing) {
        wait_for_writer(spins);
      } else if (const auto next = attempt(cur, now, n, deadline); next.decided) {
        return next.r;
      }
    }
  }

  // A window algorithm under an active hold (a bucket's word says it itself).
  bool held_window_now(std::int64_t now, rate_limit_algorithm a) const noexcept {
    return !is_bucket(a) && now < held_until_.load(std::memory_order_relaxed);
  }

  // A fixed window refusing n permits at `now`, before the hold ends: they
  // come at the hold's end if the window then current has room, or else when
  // that window ends.
  [[gnu::noinline]] reservation held_window(std::int64_t now, std::uint64_t cur, std::uint32_t n,
                                            const params& p) const noexcept {
    const auto held = held_until_.load(std::memory_order_relaxed);
    const auto w = window_of(held, cur, p);
    return {false, 0, (w.count + static_cast<std::int64_t>(n) > p.limit ? w.end : held) - now};
  }

  // Under the log mutex.
  double sliding_available(std::int64_t now) const noexcept {
    if (now < held_until_.load(std::memory_order_relaxed)) return 0.0;
    const auto tau = tau_.load(std::memory_order_relaxed);
    const auto in_window = std::count_if(log_.begin(), log_.end(), [&](std::int64_t t) { return t + tau > now; });
    return static_cast<double>(limit() - in_window);
  }

  double available(std::int64_t now, std::uint64_t w, const params& p) const noexcept {
    switch (p.algorithm) {
      case rate_limit_algorithm::token_bucket: {
        const auto empty_at = std::max(time_of(w, p.bias), now - p.tau);
        return std::max(0.0, static_cast<double>(now - empty_at) / static_cast<double>(p.interval));
      }
      case rate_limit_algorithm::leaky_bucket: {
        const auto ahead = std::max<std::int64_t>(0, time_of(w, p.bias) - now);
        return static_cast<double>(std::max<std::int64_t>(0, p.tau - ahead) / p.interval);
      }
      case rate_limit_algorithm::fixed_window: return static_cast<double>(p.limit - window_of(now, w, p).count);
      default: return 0.0;  // the sliding window: sliding_available
    }
  }

  struct window_view {
    std::uint64_t index;  // masked window index
    std::int64_t count;
    std::int64_t end;  // when the window ends (ns)
  };

  // Fixed window: the word packs the window index (high bits, masked) and
  // the permits taken in it (low `bits`). Window `base` starts at `origin`:
  // the limiter's creation or, after a reshape, the start of the window then
  // current, renumbered with the next index. A caller whose `now` is behind the stored window
  // (it read the clock before another thread) counts in the newer window,
  // which only ever refuses more.
  //
  // The index has 64 - bit_width(burst) bits and a window is at least burst
  // nanoseconds long, so the index wraps after >= 2^63 ns and an old window
  // is misread as "newer" only after >= 2^61 ns (73 years) of idle: a year of
  // idle cannot alias an old window.
  static window_view window_of(std::int64_t now, std::uint64_t word, const params& p) noexcept {
    const std::uint64_t index_mask = ~std::uint64_t{0} >> p.bits;
    const std::uint64_t count_mask = (std::uint64_t{1} << p.bits) - 1;
    const auto relative = std::max<std::int64_t>(0, now - p.origin) / p.tau;
    const std::uint64_t my_index = (p.base + static_cast<std::uint64_t>(relative)) & index_mask;
    const std::uint64_t stored = word >> p.bits;
    const std::uint64_t ahead = (stored - my_index) & index_mask;  // > 0: the stored window is newer than mine
    const std::int64_t my_end = p.origin + (relative + 1) * p.tau;
    if (ahead == 0) return {stored, static_cast<std::int64_t>(word & count_mask), my_end};
    if (ahead < (index_mask >> 1))
      return {stored, static_cast<std::int64_t>(word & count_mask), my_end + static_cast<std::int64_t>(ahead) * p.tau};
    return {my_index, 0, my_end};
  }

  // Sliding window, exact: a ring of the last burst_size grant times, oldest
  // at head_. n permits fit when the n-th oldest grant has left the window
  // (t + window <= now).
  [[gnu::noinline]] reservation reserve_sliding(std::int64_t now, std::uint32_t n, std::int64_t deadline) noexcept {
    reservation r;
    if (sliding_step(now, n, r)) return r;
    return reserve_again(now, n, deadline);  // no longer a sliding window
  }
  // False when the limiter is not a sliding window (any more).
  [[gnu::always_inline]] bool sliding_step(std::int64_t now, std::uint32_t n, reservation& r) noexcept {
    std::lock_guard lock{log_mutex_};
    if (algorithm_.load(std::memory_order_relaxed) != rate_limit_algorithm::sliding_window) return false;
    const auto size = log_.size();
    if (n == 0) {
      r = {true, now, 0};
    } else if (n > size) {
      r = {false, 0, 0, true};  // a burst lowered below n since the caller checked n
    } else {
      now = std::max(now, last_);  // a caller that read the clock late still keeps the ring sorted
      const auto nth_oldest = log_[(head_ + n - 1) % size];
      const auto free_at =
          std::max(nth_oldest + tau_.load(std::memory_order_relaxed), held_until_.load(std::memory_order_relaxed));
      if (free_at > now) {
        r = {false, 0, free_at - now};
      } else {
        for (std::uint32_t i = 0; i < n; ++i) {
          log_[head_] = now;
          head_ = (head_ + 1) % size;
        }
        last_ = now;
        r = {true, now, 0};
      }
    }
    return true;
  }

  // The newest `size` grant times, oldest first, padded with "long ago".
  std::vector<std::int64_t> resized_log(std::size_t size) const {
    std::vector<std::int64_t> out(size, long_ago);
    const auto have = log_.size();
    const auto keep = std::min(size, have);
    for (std::size_t i = 0; i < keep; ++i) out[size - keep + i] = log_[(head_ + have - keep + i) % have];
    return out;
  }

  // One cache line: the word and everything a reader reads with it.
  alignas(64) mutable std::atomic<std::uint64_t> word_{0};
  std::atomic<std::int64_t> interval_{1};
  std::atomic<std::int64_t> tau_{1};
  std::atomic<std::uint64_t> bias_{0};
  std::atomic<std::int64_t> limit_{1};
  std::atomic<std::int64_t> origin_{0};
  std::atomic<std::uint64_t> base_{0};
  std::atomic<unsigned> count_bits_{1};
  mutable std::atomic<rate_limit_algorithm> algorithm_{rate_limit_algorithm::token_bucket};  // or `writing`
  mutable std::mutex log_mutex_;
  std::vector<std::int64_t> log_;
  std::size_t head_ = 0;
  std::int64_t last_ = long_ago;
  std::atomic<std::int64_t> held_until_{long_ago};  // the last hold's end: bucket writers, window readers
};

}  // namespace detail
}  // namespace v1
}  // namespace resilience
