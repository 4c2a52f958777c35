// resilience/future.hpp: the result of async(), a std::future that polls first.
//
//   resilience::future<double> f = fetch.async("electricity");
//   double v = f.get();                        // polls up to future_spin, then sleeps
//   std::future<double> s = fetch.async("x");  // converts, where a std::future is wanted
//
// A thread that sleeps in std::future::get is woken through the kernel, and
// on a virtual machine that takes tens of microseconds after the value is
// set: most of an async() round trip. resilience::future<T> is the same
// contract (get once, broken_promise when the work is dropped unrun) but a
// waiting thread first polls for `future_spin`, so that a quick call's value
// is seen without a kernel wake-up. That polling is the only CPU it adds, and
// only while someone waits; an idle program polls nothing.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

#include "clock.hpp"
#include "executor.hpp"
#include "outcome.hpp"

namespace resilience {
inline namespace v1 {

/// How long a thread waiting on a resilience::future polls before it sleeps: 50 µs.
inline constexpr duration future_spin = std::chrono::microseconds{50};

namespace detail {

// One result, written once by the call and read once by the future's owner.
template <class T>
class future_state {
  using stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;
  enum : int { pending = 0, ready = 1, forwarded = 2 };

 public:
  void set_value(outcome<T>&& o) noexcept {
    try {
      if (o.has_value()) {
        if constexpr (std::is_void_v<T>) value_.emplace();
        else value_.emplace(std::move(*o));
      } else {
        // A rejection's views point into the call (its operation, a
        // limiter's key): it becomes its exception here, while they live.
        error_ = o.to_exception_ptr();
      }
    } catch (...) {
      error_ = std::current_exception();
    }
    publish();
  }
  void set_exception(std::exception_ptr e) noexcept {
    error_ = std::move(e);
    publish();
  }

  bool is_ready() const noexcept { return status_.load(std::memory_order_acquire) == ready; }

  // Polls for future_spin, then sleeps until the result is set or `until`.
  bool wait_until(time_point until) {
    const clock_ref real;
    if (spin_until(real, std::min(until, saturating_add(real.now(), future_spin)), [&] { return is_ready(); }))
      return true;
    std::unique_lock lock{mutex_};
    sleeping_.store(true, std::memory_order_seq_cst);
    // No lock on the setter's fast path: it reads sleeping_ after its
    // status store, and this reads status after the sleeping_ store (both
    // sequentially consistent), so one of the two sees the other.
    if (until == no_deadline) cv_.wait(lock, [&] { return status_.load(std::memory_order_seq_cst) == ready; });
    else cv_.wait_until(lock, until, [&] { return status_.load(std::memory_order_seq_cst) == ready; });
    return is_ready();
  }

  T take() {
    if (error_) std::rethrow_exception(error_);
    if constexpr (!std::is_void_v<T>) return std::move(*value_);
  }

  // Hands the result to a std::promise, now or when it is set.
  void forward_to(std::promise<T> p) {
    forward_.emplace(std::move(p));
    int expected = pending;
    if (!status_.compare_exchange_strong(expected, forwarded, std::memory_order_acq_rel)) deliver();
  }

 private:
  void publish() noexcept {
    if (status_.exchange(ready, std::memory_order_seq_cst) == forwarded) {
      deliver();
      return;
    }
    if (sleeping_.load(std::memory_order_seq_cst)) {
      std::lock_guard lock{mutex_};
      cv_.notify_all();
    }
  }

  void deliver() noexcept {
    try {
      if (error_) forward_->set_exception(error_);
      else if constexpr (std::is_void_v<T>) forward_->set_value();
      else forward_->set_value(std::move(*value_));
    } catch (...) {  // promise_already_satisfied cannot happen: one delivery
    }
  }

  std::atomic<int> status_{pending};
  std::atomic<bool> sleeping_{false};
  std::optional<stored> value_;
  std::exception_ptr error_;
  std::optional<std::promise<T>> forward_;  // only for a conversion: a promise allocates
  std::mutex mutex_;
  std::condition_variable cv_;
};

// The writing end: sets the result once; dropped unset, it sets
// std::future_errc::broken_promise (as std::promise does).
template <class T>
class future_promise {
 public:
  future_promise() : state_{std::make_shared<future_state<T>>()} {}
  future_promise(future_promise&&) noexcept = default;
  future_promise& operator=(future_promise&&) = delete;
  ~future_promise() {
    if (state_) state_->set_exception(std::make_exception_ptr(std::future_error{std::future_errc::broken_promise}));
  }
  void set(outcome<T>&& o) noexcept { std::exchange(state_, nullptr)->set_value(std::move(o)); }
  void fail(std::exception_ptr e) noexcept { std::exchange(state_, nullptr)->set_exception(std::move(e)); }
  const std::shared_ptr<future_state<T>>& state() const noexcept { return state_; }

 private:
  std::shared_ptr<future_state<T>> state_;
};

}  // namespace detail

/// The result of async(): std::future's contract (get() once; a call whose
/// work is dropped unrun reports std::future_errc::broken_promise), but a
/// waiting thread polls for future_spin before it sleeps. Converts to
/// std::future<T> (then waits as a std::future does).
template <class T>
class future {
 public:
  future() noexcept = default;
  explicit future(std::shared_ptr<detail::future_state<T>> s) noexcept : state_{std::move(s)} {}

  /// Waits, then returns the value or rethrows the failure (the user's
  /// exception object, or the rejection's exception type). Once.
  T get() {
    check();
    state_->wait_until(no_deadline);
    auto s = std::move(state_);
    return s->take();
  }
  /// True until get() or a conversion took the result.
  bool valid() const noexcept { return state_ != nullptr; }
  /// True when get() would not wait.
  bool is_ready() const {
    check();
    return state_->is_ready();
  }
  /// Waits until the result is there.
  void wait() const {
    check();
    state_->wait_until(no_deadline);
  }
  /// Waits at most d (real time); as std::future::wait_for.
  template <class Rep, class Period>
  std::future_status wait_for(std::chrono::duration<Rep, Period> d) const {
    check();
    if (state_->is_ready()) return std::future_status::ready;
    if (d <= d.zero()) return std::future_status::timeout;
    const time_point now{std::chrono::steady_clock::now()};
    return state_->wait_until(saturating_add(now, checked_duration(d, "future::wait_for")))
               ? std::future_status::ready
               : std::future_status::timeout;
  }
  /// A std::future of the same result (for APIs that take one).
  operator std::future<T>() && {
    check();
    std::promise<T> p;
    auto f = p.get_future();
    std::exchange(state_, nullptr)->forward_to(std::move(p));
    return f;
  }

 private:
  void check() const {
    if (!state_) throw std::future_error{std::future_errc::no_state};
  }
  std::shared_ptr<detail::future_state<T>> state_;
};

}  // namespace v1
}  // namespace resilience
