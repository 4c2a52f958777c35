// resilience/clock.hpp: where every policy gets its time.
//
// A policy never reads a system clock itself: it asks a clock_ref, which is
// either the real steady clock or a manual_clock that moves only when a test
// moves it.
//
//   resilience::manual_clock clk;
//   auto wrapped = resilience::resilient{fetch, resilience::retry{}}.with_clock(clk);
//   std::jthread t{[&] { wrapped("electricity"); }};  // sleeps 1 s of virtual time
//   clk.wait_for_sleepers(1);
//   clk.advance(1s);                                    // ...which passes now
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "detail/timer_service.hpp"

namespace resilience {
inline namespace v1 {

/// The one duration type of the library: nanoseconds.
using duration = std::chrono::nanoseconds;
/// The one time point type: steady-clock time in nanoseconds. manual_clock
/// produces values of the same type, starting at its own epoch.
using time_point = std::chrono::time_point<std::chrono::steady_clock, duration>;
/// "No deadline".
inline constexpr time_point no_deadline = time_point::max();

/// The longest duration an option accepts: 100 years of 365 days (options
/// that cap a wait also take duration::max(), meaning no cap). Anything longer
/// is a mistake, and the library's time arithmetic saturates anyway.
inline constexpr duration max_duration = std::chrono::hours{24 * 365 * 100};

/// t + d clamped to [time_point::min(), time_point::max()]: `now + d` never
/// wraps, and a result of time_point::max() is no_deadline.
constexpr time_point saturating_add(time_point t, duration d) noexcept {
  if (d > duration::zero() ? t > time_point::max() - d : t < time_point::min() - d)
    return d > duration::zero() ? time_point::max() : time_point::min();
  return t + d;
}
/// t - d clamped like saturating_add.
constexpr time_point saturating_sub(time_point t, duration d) noexcept {
  if (d < duration::zero() ? t > time_point::max() + d : t < time_point::min() + d)
    return d < duration::zero() ? time_point::max() : time_point::min();
  return t - d;
}
/// a - b clamped to [duration::min(), duration::max()] (deadline - now with no_deadline stays huge, not negative).
constexpr duration saturating_sub(time_point a, time_point b) noexcept {
  const auto x = a.time_since_epoch().count(), y = b.time_since_epoch().count();
  constexpr auto hi = duration::max().count(), lo = duration::min().count();
  if (y < 0 ? x > hi + y : x < lo + y) return y < 0 ? duration::max() : duration::min();
  return duration{x - y};
}
/// a + b clamped to [duration::min(), duration::max()].
constexpr duration saturating_add(duration a, duration b) noexcept {
  if (b > duration::zero() ? a > duration::max() - b : a < duration::min() - b)
    return b > duration::zero() ? duration::max() : duration::min();
  return a + b;
}

/// A user's duration (any chrono type) in nanoseconds; throws
/// std::invalid_argument naming `field` when it is NaN or longer than
/// max_duration either way, instead of wrapping in the conversion
/// (std::chrono::hours{5'124'096} is about 2^64 ns).
template <class Rep, class Period>
duration checked_duration(std::chrono::duration<Rep, Period> d, std::string_view field) {
  // Compared in long double, where the conversion itself cannot overflow.
  const long double ns = std::chrono::duration<long double, std::nano>{d}.count();
  constexpr auto bound = static_cast<long double>(max_duration.count());
  if (!(ns >= -bound && ns <= bound))  // also NaN
    throw std::invalid_argument{std::string{field} + " must be within 100 years (resilience::max_duration)"};
  return std::chrono::duration_cast<duration>(d);
}

/// Identifies a timer scheduled with call_at; 0 is never a valid id.
using timer_id = std::uint64_t;

/// The interface behind clock_ref, for users who bring their own clock.
class clock_source {
 public:
  virtual ~clock_source() = default;
  /// The current time.
  virtual time_point now() const noexcept = 0;
  /// Blocks until deadline (returns true) or until stop is requested (false).
  virtual bool sleep_until(time_point deadline, std::stop_token stop) const = 0;
  /// Runs fn at deadline, on a thread of the clock's choosing; a deadline in
  /// the past runs it as soon as possible. fn must not throw (see call_at below).
  virtual timer_id call_at(time_point deadline, std::function<void()> fn) const = 0;
  /// Cancels a timer; true when it had not started yet and never will.
  virtual bool cancel(timer_id id) const noexcept = 0;
  /// True when now() reads the real steady time (a cheaper view of it, say):
  /// such a clock and the steady clock are one time line.
  virtual bool reads_steady_time() const noexcept { return false; }
  /// True when time jumps forward by itself whenever a thread sleeps on it
  /// (manual_clock::auto_advance); async retry then waits by sleeping.
  virtual bool auto_advancing() const noexcept { return false; }
};

/// The real clock: std::chrono::steady_clock, with timers served by the
/// process's one timer service (detail/timer_service.hpp).
struct steady_clock {
  using duration = resilience::duration;
  using time_point = resilience::time_point;

  time_point now() const noexcept { return std::chrono::steady_clock::now(); }

  bool sleep_until(time_point deadline, std::stop_token stop) const {
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock lock{m};
    // The predicate is false until the deadline: only a stop request wakes early.
    return !cv.wait_until(lock, stop, deadline, [] { return false; }) && !stop.stop_requested();
  }

  /// Runs fn at deadline on the timer service's callback thread, never on
  /// the thread that fires cooperative timeouts (a blocking fn delays later
  /// callbacks, not timeouts); fn must not throw (an exception escaping it
  /// calls std::terminate, as in a std::thread).
  timer_id call_at(time_point deadline, std::function<void()> fn) const {
    return detail::timer_service::instance().call_at(deadline, std::move(fn));
  }

  bool cancel(timer_id id) const noexcept { return detail::timer_service::instance().cancel(id); }
};

namespace detail {

class manual_clock_state final : public clock_source {
 public:
  explicit manual_clock_state(time_point start, bool auto_advance)
      : now_{start.time_since_epoch().count()}, auto_advance_{auto_advance} {}

  time_point now() const noexcept override { return time_point{duration{now_.load(std::memory_order_acquire)}}; }

  bool sleep_until(time_point deadline, std::stop_token stop) const override {
    if (deadline <= now()) return true;
    if (stop.stop_requested()) return false;
    if (auto_advance_) {
      advance_to(deadline);
      return true;
    }
    if (advancer_.load(std::memory_order_relaxed) == std::this_thread::get_id())
      throw std::logic_error{"manual_clock: sleep_until in a timer callback would wait for its own advance()"};
    std::unique_lock lock{mutex_};
    const timer_id id = ++last_id_;
    bool woken = false;
    queue_.emplace(key{deadline, id}, entry{{}, &woken});
    ++sleepers_;
    parked_cv_.notify_all();
    const bool reached = wake_cv_.wait(lock, stop, [&] { return woken; });
    --sleepers_;
    if (!reached) queue_.erase(key{deadline, id});
    return reached;
  }

  timer_id call_at(time_point deadline, std::function<void()> fn) const override {
    std::unique_lock lock{mutex_};
    const timer_id id = ++last_id_;
    if (deadline <= now()) {
      lock.unlock();
      run_timer_callback(fn);
      return id;
    }
    queue_.emplace(key{deadline, id}, entry{std::move(fn), nullptr});
    parked_cv_.notify_all();
    return id;
  }

  bool cancel(timer_id id) const noexcept override {
    std::lock_guard lock{mutex_};
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if (it->first.second == id && it->second.fn) {
        queue_.erase(it);
        return true;
      }
    }
    return false;
  }

  bool auto_advancing() const noexcept override { return auto_advance_; }

  // Moves time to t, waking sleepers and firing timers in deadline order
  // (first in, first out on ties), with now() set to each deadline first.
  // Callbacks run with no lock held, so they may call_at, cancel, or
  // advance the clock again: a nested advance runs on the advancing thread,
  // within the outer one, and the order stays total.
  void advance_to(time_point t) const {
    std::unique_lock lock{advance_mutex_, std::defer_lock};  // one advancer at a time keeps the order total
    struct owner {
      const manual_clock_state* self;
      bool outer;
      ~owner() {
        if (outer) self->advancer_.store(std::thread::id{}, std::memory_order_relaxed);
      }
    };
    const bool nested = advancer_.load(std::memory_order_relaxed) == std::this_thread::get_id();
    if (!nested) {
      lock.lock();
      advancer_.store(std::this_thread::get_id(), std::memory_order_relaxed);
    }
    const owner own{this, !nested};
    std::unique_lock q{mutex_};
    while (!queue_.empty() && queue_.begin()->first.first <= t) {
      auto node = queue_.extract(queue_.begin());
      store_max(node.key().first);
      if (node.mapped().fn) {
        q.unlock();
        run_timer_callback(node.mapped().fn);
        q.lock();
      } else {
        *node.mapped().woken = true;
        wake_cv_.notify_all();
      }
    }
    store_max(t);
  }

  void wait_for_sleepers(std::size_t n) const {
    std::unique_lock lock{mutex_};
    parked_cv_.wait(lock, [&] { return sleepers_ >= n; });
  }

  std::size_t sleepers() const {
    std::lock_guard lock{mutex_};
    return sleepers_;
  }

  std::size_t pending_timers() const {
    std::lock_guard lock{mutex_};
    return static_cast<std::size_t>(
        std::count_if(queue_.begin(), queue_.end(), [](const auto& e) { return e.second.fn != nullptr; }));
  }

  std::optional<time_point> next_deadline() const {
    std::lock_guard lock{mutex_};
    if (queue_.empty()) return std::nullopt;
    return queue_.begin()->first.first;
  }

 private:
  struct entry {
    std::function<void()> fn;  // a timer, or empty for a sleeping thread
    bool* woken = nullptr;
  };
  using key = std::pair<time_point, timer_id>;

  void store_max(time_point t) const {
    auto cur = now_.load(std::memory_order_relaxed);
    const auto want = t.time_since_epoch().count();
    while (cur < want && !now_.compare_exchange_weak(cur, want, std::memory_order_acq_rel)) {
    }
  }

  mutable std::atomic<duration::rep> now_;
  bool auto_advance_;
  mutable std::mutex advance_mutex_;
  mutable std::atomic<std::thread::id> advancer_{};  // the thread inside advance_to, if any
  mutable std::mutex mutex_;
  mutable std::condition_variable_any wake_cv_;
  mutable std::condition_variable parked_cv_;
  mutable std::map<key, entry> queue_;
  mutable timer_id last_id_ = 0;
  mutable std::size_t sleepers_ = 0;
};

}  // namespace detail

/// Virtual time for tests. Time moves only through advance()/set(), or, in
/// auto-advance mode, whenever a thread sleeps. Copies share one time line.
class manual_clock {
 public:
  using duration = resilience::duration;
  using time_point = resilience::time_point;

  /// Tag: in auto-advance mode a sleep jumps time to its deadline at once
  /// (firing earlier timers in order); meant for single-threaded tests. An
  /// async() retry's wait is such a sleep on this clock, not a timer.
  struct auto_advance_t {
    explicit auto_advance_t() = default;
  };
  static constexpr auto_advance_t auto_advance{};

  /// Starts at time_point{} + start (an arbitrary epoch; only differences matter).
  explicit manual_clock(duration start = std::chrono::hours{1})
      : state_{std::make_shared<detail::manual_clock_state>(time_point{start}, false)} {}
  manual_clock(auto_advance_t, duration start = std::chrono::hours{1})
      : state_{std::make_shared<detail::manual_clock_state>(time_point{start}, true)} {}

  time_point now() const noexcept { return state_->now(); }
  /// Parks the calling thread until time reaches deadline (true) or stop is requested (false).
  bool sleep_until(time_point deadline, std::stop_token stop = {}) const {
    return state_->sleep_until(deadline, std::move(stop));
  }
  /// Runs fn on the advancing thread when time reaches deadline (at once if
  /// already due). fn may call_at, cancel and advance this clock; it must
  /// not throw (std::terminate, as on the steady clock).
  timer_id call_at(time_point deadline, std::function<void()> fn) const {
    return state_->call_at(deadline, std::move(fn));
  }
  bool cancel(timer_id id) const noexcept { return state_->cancel(id); }

  /// Moves time forward by d (negative d is an error); stops at time_point::max().
  void advance(duration d) const {
    if (d < duration::zero()) throw std::invalid_argument{"manual_clock::advance: negative duration"};
    state_->advance_to(saturating_add(now(), d));
  }
  /// Moves time forward to t; t before now() is an error (time never goes back).
  void set(time_point t) const {
    if (t < now()) throw std::invalid_argument{"manual_clock::set: time point is in the past"};
    state_->advance_to(t);
  }
  /// Blocks (without timing out) until at least n threads are parked in sleep_until.
  void wait_for_sleepers(std::size_t n) const { state_->wait_for_sleepers(n); }
  /// Threads currently parked in sleep_until.
  std::size_t sleepers() const { return state_->sleepers(); }
  /// Timers scheduled and not yet fired or cancelled.
  std::size_t pending_timers() const { return state_->pending_timers(); }
  /// The earliest deadline of a parked thread or timer, if any.
  std::optional<time_point> next_deadline() const { return state_->next_deadline(); }
  /// Advances to the next deadline (if any); returns whether there was one.
  bool advance_to_next() const {
    auto next = state_->next_deadline();
    if (!next) return false;
    state_->advance_to(std::max(*next, now()));
    return true;
  }

 private:
  friend class clock_ref;
  std::shared_ptr<detail::manual_clock_state> state_;
};

/// A copyable handle to any clock; the default is the real steady clock.
/// Policies and call contexts hold one.
class clock_ref {
 public:
  using duration = resilience::duration;
  using time_point = resilience::time_point;

  clock_ref() noexcept = default;
  clock_ref(steady_clock) noexcept {}
  clock_ref(const manual_clock& c) noexcept : source_{c.state_} {}
  explicit clock_ref(std::shared_ptr<const clock_source> source) noexcept : source_{std::move(source)} {}

  time_point now() const noexcept { return source_ ? source_->now() : time_point{std::chrono::steady_clock::now()}; }
  bool sleep_until(time_point deadline, std::stop_token stop = {}) const {
    return source_ ? source_->sleep_until(deadline, std::move(stop))
                   : steady_clock{}.sleep_until(deadline, std::move(stop));
  }
  timer_id call_at(time_point deadline, std::function<void()> fn) const {
    return source_ ? source_->call_at(deadline, std::move(fn)) : steady_clock{}.call_at(deadline, std::move(fn));
  }
  bool cancel(timer_id id) const noexcept { return source_ ? source_->cancel(id) : steady_clock{}.cancel(id); }
  /// True for the real steady clock.
  bool is_steady() const noexcept { return source_ == nullptr; }
  /// True for a manual_clock in auto-advance mode.
  bool auto_advancing() const noexcept { return source_ && source_->auto_advancing(); }
  /// True when both clocks tell the same time: one clock, or two views of
  /// the real steady time (steady_clock, coarse_clock()).
  bool same_time_line(const clock_ref& o) const noexcept {
    const auto real = [](const clock_ref& c) { return !c.source_ || c.source_->reads_steady_time(); };
    return source_ == o.source_ || (real(*this) && real(o));
  }

  friend bool operator==(const clock_ref& a, const clock_ref& b) noexcept { return a.source_ == b.source_; }

 private:
  std::shared_ptr<const clock_source> source_;
};

}  // namespace v1
}  // namespace resilience
