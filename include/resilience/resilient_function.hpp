// resilience/resilient_function.hpp: a nameable, type-erased resilient call.
//
//   class factor_client {
//     resilience::resilient_function<double(const std::string&)> fetch_;
//    public:
//     explicit factor_client(http& h)
//         : fetch_{resilience::resilient{[&h](const std::string& a) { return h.factor(a); },
//                                        resilience::retry{}, resilience::timeout{5s}}} {}
//     double factor(const std::string& a) const { return fetch_(a); }
//   };
//
// resilient_function<R(Args...)> holds any resilient<F, Policies...> whose
// call with Args... returns R (or something convertible to it), and keeps its
// whole interface: operator(), try_call, call_with and try_call_with, async
// and async_with, and (with coro.hpp) co_call and co_try_call. Move-only, like
// std::move_only_function; the wrapped resilient lives on the heap (one
// allocation when it is built), so moving one moves a pointer. A call costs
// one indirect call on top of the pipeline.
#pragma once

#include <memory>
#include <type_traits>
#include <utility>

#include "context.hpp"
#include "future.hpp"
#include "outcome.hpp"
#include "policy.hpp"
#include "resilient.hpp"

namespace resilience {
inline namespace v1 {

template <class Signature>
class resilient_function;

namespace detail {

// outcome<U> as outcome<R>: the value converted, the failure as it is.
template <class R, class U>
outcome<R> convert_outcome(outcome<U>&& o) {
  if constexpr (std::is_same_v<R, U>) {
    return std::move(o);
  } else {
    if (o.has_exception()) return outcome<R>{o.exception()};
    if (o.has_rejection()) return outcome<R>{o.rejection()};
    if constexpr (std::is_void_v<R>) return outcome<R>{};
    else return outcome<R>{std::in_place, std::move(*o)};
  }
}

// The continuation an erased async call ends with: the outcome and the
// call's owned state (see post_call).
template <class R>
using erased_done = unique_function<void(outcome<R>, std::shared_ptr<void>)>;

}  // namespace detail

/// A type-erased, move-only resilient call with the signature R(Args...).
template <class R, class... Args>
class resilient_function<R(Args...)> {
 public:
  /// An empty function (calling it is undefined; see operator bool).
  resilient_function() noexcept = default;
  /// Wraps r (moved to the heap). Its call with Args... must return R or
  /// something convertible to it.
  template <class F, class... Policies>
  requires std::is_invocable_v < const resilient<F, Policies...>
  &,
      Args... > resilient_function(resilient<F, Policies...> r)  // NOLINT: implicit, as std::function from a callable
      : self_{new resilient<F, Policies...>(std::move(r))},
  ops_{&ops_for<resilient<F, Policies...>>} {}

  resilient_function(resilient_function&& o) noexcept
      : self_{std::exchange(o.self_, nullptr)}, ops_{std::exchange(o.ops_, nullptr)} {}
  resilient_function& operator=(resilient_function&& o) noexcept {
    if (this != &o) {
      reset();
      self_ = std::exchange(o.self_, nullptr);
      ops_ = std::exchange(o.ops_, nullptr);
    }
    return *this;
  }
  resilient_function(const resilient_function&) = delete;
  resilient_function& operator=(const resilient_function&) = delete;
  ~resilient_function() { reset(); }

  /// True when it holds a resilient call.
  explicit operator bool() const noexcept { return ops_ != nullptr; }

  /// Calls through the policies; returns the value or throws the failure.
  R operator()(Args... args) const { return ops_->call(self_, no_options, std::forward<Args>(args)...); }
  /// operator() with per-call options.
  R call_with(const call_options& options, Args... args) const {
    return ops_->call(self_, options, std::forward<Args>(args)...);
  }
  /// Calls through the policies and returns the outcome; never throws.
  outcome<R> try_call(Args... args) const noexcept { return ops_->try_call(self_, {}, std::forward<Args>(args)...); }
  /// try_call with per-call options.
  outcome<R> try_call_with(const call_options& options, Args... args) const noexcept {
    return ops_->try_call(self_, options, std::forward<Args>(args)...);
  }
  /// Calls on the executor; the arguments are copied (moved) into the call.
  future<R> async(Args... args) const { return ops_->async(self_, {}, std::forward<Args>(args)...); }
  /// async with per-call options.
  future<R> async_with(const call_options& options, Args... args) const {
    return ops_->async(self_, options, std::forward<Args>(args)...);
  }

  /// `co_await f.co_call(args...)` (defined in coro.hpp: include it to use these four).
  auto co_call(Args... args) const;
  /// co_call with per-call options.
  auto co_call_with(const call_options& options, Args... args) const;
  /// `co_await f.co_try_call(args...)`: the outcome; never throws.
  auto co_try_call(Args... args) const;
  /// co_try_call with per-call options.
  auto co_try_call_with(const call_options& options, Args... args) const;

  /// The executor of its async calls (empty = default_executor()).
  const executor_ref& executor() const noexcept { return ops_->executor(self_); }
  /// True when a co_call runs on the awaiting thread (no policy ever waits).
  bool runs_inline() const noexcept { return ops_->inline_call; }
  /// Starts the call as async() does; done(outcome, keep) is called once.
  void post(const call_options& options, detail::erased_done<R> done, Args... args) const {
    ops_->post(self_, options, std::move(done), std::forward<Args>(args)...);
  }

 private:
  static inline const call_options no_options{};

  // The value comes back as it is (in registers for a small R) and a
  // failure as the exception: no outcome crosses the indirect call.
  struct ops {
    R (*call)(const void* self, const call_options& options, Args&&... args);
    outcome<R> (*try_call)(const void* self, const call_options& options, Args&&... args) noexcept;
    future<R> (*async)(const void* self, const call_options& options, Args&&... args);
    void (*post)(const void* self, const call_options& options, detail::erased_done<R> done, Args&&... args);
    void (*destroy)(void* self) noexcept;
    const executor_ref& (*executor)(const void* self) noexcept;
    bool inline_call;
  };

  template <class W>
  static W& as(const void* self) noexcept {
    return *static_cast<W*>(const_cast<void*>(self));
  }

  template <class W>
  static constexpr bool inline_of() {
    return detail::runs_inline_v<std::remove_cvref_t<decltype(std::declval<const W&>().policies())>>;
  }

  template <class W>
  static constexpr ops ops_for{
      [](const void* self, const call_options& options, Args&&... args) -> R {
        if constexpr (std::is_void_v<R>) as<W>(self).call_with(options, args...);
        else return static_cast<R>(as<W>(self).call_with(options, args...));
      },
      [](const void* self, const call_options& options, Args&&... args) noexcept -> outcome<R> {
        if constexpr (std::is_same_v<decltype(as<W>(self).try_call_with(options, args...)), outcome<R>>) {
          return as<W>(self).try_call_with(options, args...);
        } else {
          try {
            return detail::convert_outcome<R>(as<W>(self).try_call_with(options, args...));
          } catch (...) {
            return outcome<R>{std::current_exception()};
          }
        }
      },
      [](const void* self, const call_options& options, Args&&... args) -> future<R> {
        detail::future_promise<R> promise;
        future<R> result{promise.state()};
        try {
          detail::post_call(
              as<W>(self), options,
              [promise = std::move(promise)](auto o, std::shared_ptr<void>) mutable {
                promise.set(detail::convert_outcome<R>(std::move(o)));
              },
              std::forward<Args>(args)...);
        } catch (...) {  // the executor refused the call: its failure is what post threw
          detail::future_promise<R> failed;
          future<R> refused{failed.state()};
          failed.fail(std::current_exception());
          return refused;
        }
        return result;
      },
      [](const void* self, const call_options& options, detail::erased_done<R> done, Args&&... args) {
        detail::post_call(
            as<W>(self), options,
            [done = std::move(done)](auto o, std::shared_ptr<void> keep) mutable {
              done(detail::convert_outcome<R>(std::move(o)), std::move(keep));
            },
            std::forward<Args>(args)...);
      },
      [](void* self) noexcept { delete static_cast<W*>(self); },
      [](const void* self) noexcept -> const executor_ref& { return as<W>(self).policies().executor(); },
      inline_of<W>()};

  void reset() noexcept {
    if (ops_ != nullptr) ops_->destroy(self_);
    self_ = nullptr;
    ops_ = nullptr;
  }

  void* self_ = nullptr;
  const ops* ops_ = nullptr;
};

}  // namespace v1
}  // namespace resilience
