// resilience/resilient.hpp: the wrapper that runs a callable through policies.
//
//   resilience::resilient fetch{fetch_emission_factor,
//                               resilience::retry{{.max_retries = 3, .base_delay = 1s}}};
//   double f = fetch("electricity");          // throws what the last attempt threw
//   auto r  = fetch.try_call("electricity");  // outcome<double>, never throws
//
// Policies are listed outermost first: resilient{f, retry, timeout} retries a
// call that each attempt times out on its own. A policy is any type with
//
//   template <class Next> auto execute(call_context& ctx, Next&& next) const -> outcome<T>;
//
// where next(ctx) runs the rest of the pipeline and returns its outcome.
#pragma once

#include <concepts>
#include <exception>
#include <functional>
#include <stop_token>
#include <tuple>
#include <type_traits>
#include <utility>

#include "clock.hpp"
#include "context.hpp"
#include "outcome.hpp"

namespace resilience {
inline namespace v1 {

template <class F, class... Policies>
class resilient;

namespace detail {

template <class T>
struct is_outcome : std::false_type {};
template <class T>
struct is_outcome<outcome<T>> : std::true_type {};

// A callable may take the call's std::stop_token first, as std::jthread's do.
template <class F, class... Args>
constexpr bool takes_stop_token = std::is_invocable_v<F&, std::stop_token, Args&...>;

template <class F, class... Args>
struct call_result {
  using type = std::invoke_result_t<F&, Args&...>;
};
template <class F, class... Args>
  requires takes_stop_token<F, Args...>
struct call_result<F, Args...> {
  using type = std::invoke_result_t<F&, std::stop_token, Args&...>;
};

/// What the callable returns when called with lvalues of Args, references stripped.
template <class F, class... Args>
using call_result_t = std::remove_cvref_t<typename call_result<F, Args...>::type>;

template <class F, class... Args>
decltype(auto) invoke_callable(F& f, const std::stop_token& stop, Args&... args) {
  if constexpr (takes_stop_token<F, Args...>)
    return std::invoke(f, stop, args...);
  else
    return std::invoke(f, args...);
}

// The innermost step of every pipeline: run the callable, catching what it throws.
template <class F, class... Args>
outcome<call_result_t<F, Args...>> invoke_to_outcome(F& f, const call_context& ctx, Args&... args) noexcept {
  using R = call_result_t<F, Args...>;
  try {
    if constexpr (std::is_void_v<R>) {
      invoke_callable(f, ctx.stop, args...);
      return outcome<void>{};
    } else {
      return outcome<R>{std::in_place, invoke_callable(f, ctx.stop, args...)};
    }
  } catch (...) {
    return outcome<R>{std::current_exception()};
  }
}

// The failure path of value_of, kept out of line so that the happy path of
// operator() stays small enough for every compiler to inline.
template <class O>
[[noreturn, gnu::noinline, gnu::cold]] void rethrow_failure(const O& o) {
  o.throw_if_failed();
  std::terminate();  // unreachable: only called with a failed outcome
}

// Unwraps an outcome at the API edge: the value, or the failure thrown.
template <class O>
auto value_of(O&& o) -> typename std::remove_cvref_t<O>::value_type {
  if (!o.has_value()) [[unlikely]]
    rethrow_failure(o);
  if constexpr (!std::is_void_v<typename std::remove_cvref_t<O>::value_type>) return std::move(*o);
}

}  // namespace detail

/// A policy usable with outcome-returning `Next`: `p.execute(ctx, next)`.
template <class P, class Next>
concept policy_for = std::invocable<Next&, call_context&> && requires(const P& p, call_context& ctx, Next& next) {
  { p.execute(ctx, next) } -> std::same_as<std::remove_cvref_t<decltype(p.execute(ctx, next))>>;
  requires detail::is_outcome<std::remove_cvref_t<decltype(p.execute(ctx, next))>>::value;
};

/// Policies without a callable: run any callable through them, or wrap one.
///
///   resilience::pipeline p{resilience::retry{}, breaker};
///   auto v = p.execute(fetch_factor, "electricity");
///   auto fetch = p.wrap(fetch_factor);
template <class... Policies>
class pipeline {
 public:
  /// The policies, outermost first.
  explicit pipeline(Policies... policies) : policies_{std::move(policies)...} {}

  /// Runs the callable `inner(ctx) -> outcome<T>` through every policy.
  template <class Inner>
  auto run(call_context& ctx, Inner& inner) const {
    return step<0>(ctx, inner);
  }

  /// Calls f(args...) through the policies; returns its value or throws.
  template <class F, class... Args>
  decltype(auto) execute(F&& f, Args&&... args) const {
    return detail::value_of(try_execute_with({}, f, args...));
  }

  /// Calls f(args...) through the policies; never throws.
  template <class F, class... Args>
  auto try_execute(F&& f, Args&&... args) const noexcept {
    return try_execute_with({}, f, args...);
  }

  /// try_execute with per-call options (tenant, stop_token, deadline).
  template <class F, class... Args>
  auto try_execute_with(const call_options& options, F&& f, Args&&... args) const noexcept {
    call_context ctx{clock_, options};
    auto inner = [&](call_context& c) { return detail::invoke_to_outcome(f, c, args...); };
    return run(ctx, inner);
  }

  /// A resilient<F, Policies...> calling f through copies of these policies.
  template <class F>
  resilient<std::decay_t<F>, Policies...> wrap(F&& f) const& {
    return std::apply([&](const Policies&... ps) { return resilient<std::decay_t<F>, Policies...>{std::forward<F>(f), ps...}; },
                      policies_)
        .with_clock(clock_);
  }

  /// Uses `clk` for every call's context (the default is the real steady clock).
  pipeline& with_clock(clock_ref clk) & noexcept {
    clock_ = std::move(clk);
    return *this;
  }
  pipeline&& with_clock(clock_ref clk) && noexcept {
    clock_ = std::move(clk);
    return std::move(*this);
  }
  /// The clock of this pipeline's calls.
  const clock_ref& clock() const noexcept { return clock_; }

  /// The policies, outermost first.
  const std::tuple<Policies...>& policies() const noexcept { return policies_; }

 private:
  template <std::size_t I, class Inner>
  auto step(call_context& ctx, Inner& inner) const {
    if constexpr (I == sizeof...(Policies)) {
      return inner(ctx);
    } else {
      auto next = [this, &inner](call_context& c) { return step<I + 1>(c, inner); };
      using result = decltype(std::get<I>(policies_).execute(ctx, next));
      static_assert(detail::is_outcome<std::remove_cvref_t<result>>::value,
                    "a policy's execute(ctx, next) must return resilience::outcome<T>");
      return std::get<I>(policies_).execute(ctx, next);
    }
  }

  std::tuple<Policies...> policies_;
  clock_ref clock_;
};

/// A callable wrapped in policies (outermost first). Called exactly like the
/// callable; copying it copies stateless policies and shares stateful ones.
template <class F, class... Policies>
class resilient {
 public:
  /// Wraps f in policies, outermost first.
  explicit resilient(F f, Policies... policies) : f_{std::move(f)}, pipeline_{std::move(policies)...} {}

  /// Calls through the policies; returns the value, rethrows the user's
  /// exception unchanged, or throws the rejection (timeout_error...).
  template <class... Args>
  decltype(auto) operator()(Args&&... args) const {
    if constexpr (sizeof...(Policies) == 0) {
      if constexpr (detail::takes_stop_token<const F, Args...>)
        return std::invoke(f_, std::stop_token{}, std::forward<Args>(args)...);
      else
        return std::invoke(f_, std::forward<Args>(args)...);
    } else {
      return detail::value_of(try_call_with({}, args...));
    }
  }

  /// operator() with per-call options.
  template <class... Args>
  decltype(auto) call_with(const call_options& options, Args&&... args) const {
    return detail::value_of(try_call_with(options, args...));
  }

  /// Calls through the policies and returns the outcome; never throws, not
  /// even for the callable's own exception.
  template <class... Args>
  auto try_call(Args&&... args) const noexcept {
    return try_call_with({}, args...);
  }

  /// try_call with per-call options (tenant, stop_token, deadline, operation name).
  template <class... Args>
  auto try_call_with(const call_options& options, Args&&... args) const noexcept {
    call_context ctx{pipeline_.clock(), options};
    auto inner = [&](call_context& c) { return detail::invoke_to_outcome(f_, c, args...); };
    return pipeline_.run(ctx, inner);
  }

  /// Uses `clk` for every call's context (the default is the real steady clock).
  resilient& with_clock(clock_ref clk) & noexcept {
    pipeline_.with_clock(std::move(clk));
    return *this;
  }
  resilient&& with_clock(clock_ref clk) && noexcept {
    pipeline_.with_clock(std::move(clk));
    return std::move(*this);
  }

  /// The wrapped callable.
  const F& callable() const noexcept { return f_; }
  /// The policies and clock.
  const pipeline<Policies...>& policies() const noexcept { return pipeline_; }

 private:
  F f_;
  pipeline<Policies...> pipeline_;
};

template <class F, class... Policies>
resilient(F, Policies...) -> resilient<F, Policies...>;

template <class... Policies>
pipeline(Policies...) -> pipeline<Policies...>;

}  // namespace v1
}  // namespace resilience
