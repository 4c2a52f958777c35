// resilience/coro.hpp: C++20 coroutine support, co_call and co_try_call.
//
//   #include <resilience/coro.hpp>
//   my_task<double> lookup(const resilience::resilient<...>& fetch) {
//     double f = co_await fetch.co_call("electricity");       // throws what the call failed with
//     auto o = co_await fetch.co_try_call_with({.stop = st}, "steel");  // an outcome; never throws
//   }
//
// The awaitables impose no task type: they work in any coroutine (asio's
// awaitable needs a bridge, see examples/asio_coroutine.cpp). A call runs
// one of two ways, chosen at compile time from the policies:
//  - inline: when every policy says it never waits (never_waits: fallback,
//    circuit breaker, degradation guard) or there is none, the call runs on
//    the awaiting thread and co_await does not suspend; nothing is
//    allocated beyond the caller's frame.
//  - async: otherwise the call runs as async() runs it (the whole call is
//    posted to the executor; retry waits and async timeouts are timers, no
//    thread is held; a sync-only policy runs on the executor) and the
//    coroutine is resumed on the thread that ends the call: an executor
//    thread, never a timer thread (a timer's completion is posted to the
//    executor). If the call ends before await_suspend returns, the
//    coroutine goes on at once by symmetric transfer.
// The caller's std::stop_token (call_options::stop) cancels the call: a
// retry's wait ends, a stop-aware callable sees the request. The arguments
// are copied (moved) into an async call, as in async(); the resilient and
// the option strings must outlive the co_await.
#pragma once

#include <atomic>
#include <coroutine>
#include <exception>
#include <future>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include "executor.hpp"
#include "outcome.hpp"
#include "resilient.hpp"
#include "resilient_function.hpp"

namespace resilience {
inline namespace v1 {
namespace detail {

// Where an async call's outcome meets the suspended coroutine. The call's
// completion and await_suspend race for `state_`: whoever comes second
// resumes the coroutine (await_suspend by symmetric transfer).
template <class T>
class resume_slot {
 public:
  enum : int { starting = 0, suspended = 1, finished = 2 };

  // The call's end: called once, on any thread.
  void complete(outcome<T>&& o, std::shared_ptr<void> keep) noexcept {
    result_.emplace(std::move(o));
    keep_ = std::move(keep);  // the call's owned state: a rejection's views point into it
    if (state_.exchange(finished, std::memory_order_acq_rel) != suspended) return;  // await_suspend resumes
    const std::coroutine_handle<> h = handle_;
    if (in_timer_callback != 0) {
      // A timer's thread serves every timer: the coroutine goes on an executor instead.
      try {
        exec_.post([h] { h.resume(); });
        return;
      } catch (...) {  // the executor refused: better late on this thread than never
      }
    }
    h.resume();
  }

  void suspend(std::coroutine_handle<> h, executor_ref exec) noexcept {
    handle_ = h;
    exec_ = std::move(exec);
  }
  // After the call started: resume now if it already ended, else let it resume us.
  std::coroutine_handle<> park() noexcept {
    if (state_.exchange(suspended, std::memory_order_acq_rel) == finished) return handle_;
    return std::noop_coroutine();  // `this` may be gone already: touch nothing
  }

  // The call could not start (await_suspend caught what starting it threw):
  // that is its failure, whatever a dropped done reported before.
  void fail_start(std::exception_ptr e) noexcept {
    if (state_.load(std::memory_order_acquire) == finished) {
      *result_ = outcome<T>{std::move(e)};
    } else {
      result_.emplace(std::move(e));
      state_.store(finished, std::memory_order_release);
    }
  }

  outcome<T>& result() noexcept { return *result_; }

 private:
  std::atomic<int> state_{starting};
  std::coroutine_handle<> handle_;
  executor_ref exec_;
  std::optional<outcome<T>> result_;
  std::shared_ptr<void> keep_;
};

// The done callback of an async co_call: completes the slot once; dropped
// uncalled (the executor shut down with the call queued), it completes it
// with std::future_errc::broken_promise, as async()'s future reports.
template <class T>
class resume_callback {
 public:
  explicit resume_callback(resume_slot<T>* slot) noexcept : slot_{slot} {}
  resume_callback(resume_callback&& o) noexcept : slot_{std::exchange(o.slot_, nullptr)} {}
  resume_callback& operator=(resume_callback&&) = delete;
  ~resume_callback() {
    if (slot_ != nullptr)
      std::exchange(slot_, nullptr)
          ->complete(outcome<T>{std::make_exception_ptr(std::future_error{std::future_errc::broken_promise})}, nullptr);
  }
  void operator()(outcome<T> o, std::shared_ptr<void> keep) noexcept {
    std::exchange(slot_, nullptr)->complete(std::move(o), std::move(keep));
  }

 private:
  resume_slot<T>* slot_;
};

// The result of a co_await: the value (or the failure thrown), or the outcome.
template <bool Throws, class T>
auto awaited(outcome<T>&& o) -> std::conditional_t<Throws, T, outcome<T>> {
  if constexpr (Throws) return value_of(std::move(o));
  else return std::move(o);
}

/// co_call's awaitable for a resilient<F, Policies...>. Holds the arguments
/// as given: references to lvalues, values moved from rvalues, so an
/// awaitable kept in a variable is safe to await later (once).
template <bool Throws, class R, class... A>
class call_awaitable {
  using pipeline_type = std::remove_cvref_t<decltype(std::declval<const R&>().policies())>;
  using result_type =
      decltype(std::declval<const R&>().try_call_with(std::declval<const call_options&>(), std::declval<A&>()...));
  using T = typename result_type::value_type;
  static constexpr bool inline_call = runs_inline_v<pipeline_type>;

 public:
  template <class... B>
  call_awaitable(const R& r, const call_options& options, B&&... args)
      : r_{&r}, options_{options}, args_{std::forward<B>(args)...} {}
  call_awaitable(const call_awaitable&) = delete;
  call_awaitable& operator=(const call_awaitable&) = delete;

  bool await_ready() const noexcept { return inline_call; }

  std::coroutine_handle<> await_suspend(std::coroutine_handle<> h) requires(!inline_call) {
    slot_.suspend(h, r_->policies().executor());
    try {
      std::apply(
          [&](auto&&... a) { post_call(*r_, options_, resume_callback<T>{&slot_}, std::forward<decltype(a)>(a)...); },
          std::move(args_));
    } catch (...) {  // the executor refused the call (dropping its done reported broken_promise first)
      slot_.fail_start(std::current_exception());
    }
    return slot_.park();
  }
  void await_suspend(std::coroutine_handle<>) requires inline_call {}

  auto await_resume() {
    if constexpr (inline_call)
      return awaited<Throws>(std::apply([&](A&... a) { return r_->try_call_with(options_, a...); }, args_));
    else return awaited<Throws>(std::move(slot_.result()));
  }

 private:
  const R* r_;
  call_options options_;
  std::tuple<A...> args_;
  [[no_unique_address]] std::conditional_t<inline_call, std::tuple<>, resume_slot<T>> slot_;
};

/// co_call's awaitable for a resilient_function<R(Args...)>: the same two
/// ways, chosen when the function was built (one flag read).
template <bool Throws, class R, class... Args>
class erased_awaitable {
  using function_type = resilient_function<R(Args...)>;

 public:
  template <class... B>
  erased_awaitable(const function_type& f, const call_options& options, B&&... args)
      : f_{&f}, options_{options}, args_{std::forward<B>(args)...} {}
  erased_awaitable(const erased_awaitable&) = delete;
  erased_awaitable& operator=(const erased_awaitable&) = delete;

  bool await_ready() const noexcept { return f_->runs_inline(); }

  std::coroutine_handle<> await_suspend(std::coroutine_handle<> h) {
    slot_.suspend(h, f_->executor());
    try {
      std::apply(
          [&](Args&... a) {
            f_->post(options_, erased_done<R>{[slot = &slot_](outcome<R> o, std::shared_ptr<void> keep) mutable {
                       slot->complete(std::move(o), std::move(keep));
                     }},
                     std::forward<Args>(a)...);
          },
          args_);
    } catch (...) {
      slot_.fail_start(std::current_exception());
    }
    return slot_.park();
  }

  auto await_resume() {
    if (f_->runs_inline())
      return awaited<Throws>(
          std::apply([&](Args&... a) { return f_->try_call_with(options_, std::forward<Args>(a)...); }, args_));
    return awaited<Throws>(std::move(slot_.result()));
  }

 private:
  const function_type* f_;
  call_options options_;
  std::tuple<Args...> args_;  // as the signature takes them: references stay references
  resume_slot<R> slot_;
};

}  // namespace detail

template <class R, class... Args>
auto resilient_function<R(Args...)>::co_call(Args... args) const {
  return detail::erased_awaitable<true, R, Args...>{*this, call_options{}, std::forward<Args>(args)...};
}
template <class R, class... Args>
auto resilient_function<R(Args...)>::co_call_with(const call_options& options, Args... args) const {
  return detail::erased_awaitable<true, R, Args...>{*this, options, std::forward<Args>(args)...};
}
template <class R, class... Args>
auto resilient_function<R(Args...)>::co_try_call(Args... args) const {
  return detail::erased_awaitable<false, R, Args...>{*this, call_options{}, std::forward<Args>(args)...};
}
template <class R, class... Args>
auto resilient_function<R(Args...)>::co_try_call_with(const call_options& options, Args... args) const {
  return detail::erased_awaitable<false, R, Args...>{*this, options, std::forward<Args>(args)...};
}

template <class F, class... Policies>
template <class... Args>
auto resilient<F, Policies...>::co_call(Args&&... args) const {
  return detail::call_awaitable<true, resilient, Args...>{*this, call_options{}, std::forward<Args>(args)...};
}
template <class F, class... Policies>
template <class... Args>
auto resilient<F, Policies...>::co_call_with(const call_options& options, Args&&... args) const {
  return detail::call_awaitable<true, resilient, Args...>{*this, options, std::forward<Args>(args)...};
}
template <class F, class... Policies>
template <class... Args>
auto resilient<F, Policies...>::co_try_call(Args&&... args) const {
  return detail::call_awaitable<false, resilient, Args...>{*this, call_options{}, std::forward<Args>(args)...};
}
template <class F, class... Policies>
template <class... Args>
auto resilient<F, Policies...>::co_try_call_with(const call_options& options, Args&&... args) const {
  return detail::call_awaitable<false, resilient, Args...>{*this, options, std::forward<Args>(args)...};
}

}  // namespace v1
}  // namespace resilience
