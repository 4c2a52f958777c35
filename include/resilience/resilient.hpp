// resilience/resilient.hpp: the wrapper that runs a callable through policies.
//
//   resilience::resilient fetch{fetch_emission_factor,
//                               resilience::retry{{.max_retries = 3, .base_delay = 1s}}};
//   double f = fetch("electricity");          // throws what the last attempt threw
//   auto r  = fetch.try_call("electricity");  // outcome<double>, never throws
//
// Policies are listed outermost first: resilient{f, retry, timeout} retries a
// call that each attempt times out on its own. What a policy, or a hook it
// runs, throws becomes its outcome's failure: try_call never terminates.
// Stateful policies run on the pipeline's one clock (see with_clock).
// What a policy is (the `policy` concept, call_view, async_callback) is in
// policy.hpp; this header only composes policies, and no policy includes it.
#pragma once

#include <atomic>
#include <concepts>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "clock.hpp"
#include "context.hpp"
#include "executor.hpp"
#include "failures.hpp"
#include "future.hpp"
#include "outcome.hpp"
#include "policy.hpp"

namespace resilience {
inline namespace v1 {

template <class F, class... Policies>
class resilient;
template <class... Policies>
class pipeline;

namespace detail {

// A callable may take the call's std::stop_token first, as std::jthread's do.
template <class F, class... Args>
constexpr bool takes_stop_token = std::is_invocable_v<F&, std::stop_token, Args&...>;

// One message for the one mistake (a static_assert needs a literal).
#define RESILIENCE_DETAIL_MOVE_ONLY_ARGUMENT                                                                \
  "resilience: the callable takes a move-only argument by value, but a resilient call keeps its arguments " \
  "and passes them again on every attempt (as lvalues): take the parameter by reference (const T&), or "    \
  "pass a copyable handle such as std::shared_ptr instead of std::unique_ptr"

// The wrapper passes the call's arguments to the callable as lvalues, once
// per attempt; a parameter taken by value must then be copyable.
template <class F, class... Args>
constexpr bool callable_with_lvalues = std::is_invocable_v<F&, Args&...> || takes_stop_token<F, Args...>;
template <class F, class... Args>
constexpr bool only_callable_with_rvalues =
    !callable_with_lvalues<F, Args...> &&
    (std::is_invocable_v<F&, Args&&...> || std::is_invocable_v<F&, std::stop_token, Args&&...>);

// What such a callable returns when called with rvalues (so that the one
// static_assert is the only error, not the caller's use of the result).
template <class F, class... Args>
using rvalue_call_result_t = std::remove_cvref_t<
    typename std::conditional_t<std::is_invocable_v<F&, Args&&...>, std::invoke_result<F&, Args&&...>,
                                std::invoke_result<F&, std::stop_token, Args&&...>>::type>;

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
  if constexpr (takes_stop_token<F, Args...>) return std::invoke(f, stop, args...);
  else return std::invoke(f, args...);
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

/// The outcome type an inner pipeline step returns.
template <class O>
using outcome_value_t = typename std::remove_cvref_t<O>::value_type;

template <class F, class Pipeline, class... A>
struct owned_call;

template <class T>
class once_callback;

/// A stateful policy that reads time: `p.clock()` is the clock its state
/// runs on (circuit_breaker, bulkhead, rate_limit).
template <class P>
concept reads_clock = requires(const P& p) {
  { p.clock() } -> std::convertible_to<const clock_ref&>;
};

// A policy whose sync form neither waits on time nor blocks for other calls
// (it says so: `static constexpr bool never_waits = true;`).
template <class P>
concept never_waiting_policy = requires {
  { P::never_waits } -> std::convertible_to<bool>;
}
&&P::never_waits;

/// True when a co_call through these policies runs on the awaiting thread.
template <class Pipeline>
struct runs_inline;
template <class... Policies>
struct runs_inline<pipeline<Policies...>> : std::bool_constant<(never_waiting_policy<Policies> && ...)> {};
template <class Pipeline>
inline constexpr bool runs_inline_v = runs_inline<Pipeline>::value;

// "circuit_breaker" for resilience::v1::circuit_breaker.
template <class T>
std::string policy_name() {
  std::string name = type_name<T>();
  for (const std::string_view ns : {std::string_view{"resilience::v1::"}, std::string_view{"resilience::"}})
    if (std::string_view{name}.substr(0, ns.size()) == ns) name.erase(0, ns.size());
  return name;
}

// A sync call's description, referring to the caller's callable and arguments.
template <class Fn, class Pipeline, class... Args>
struct bound_call {
  using owned = owned_call<std::decay_t<Fn>, Pipeline, std::decay_t<Args>...>;
  static constexpr bool stop_aware = takes_stop_token<Fn, Args...>;
  static constexpr bool can_launch = std::is_copy_constructible_v<std::decay_t<Fn>> &&
                                     (std::is_copy_constructible_v<std::decay_t<Args>> && ...) &&
                                     std::is_copy_constructible_v<Pipeline>;

  const std::tuple<Args&...>& arguments() const noexcept { return args; }

  template <std::size_t Level, class Done>
  void launch(const call_context& ctx, std::stop_token stop, Done&& done) const {
    auto self =
        std::apply([&](Args&... a) { return std::make_shared<owned>(*f, *pl, ctx, std::move(stop), a...); }, args);
    auto* s = self.get();
    s->exec.post([self = std::move(self), done = std::forward<Done>(done)]() mutable {
      done(self->template run_sync<Level>(self->ctx));
    });
  }

  Fn* f;
  const Pipeline* pl;
  std::tuple<Args&...> args;
};

}  // namespace detail

/// Policies without a callable: run any callable through them, or wrap one.
///
///   resilience::pipeline p{resilience::retry{}, breaker};
///   auto v = p.execute(fetch_factor, "electricity");
///   auto fetch = p.wrap(fetch_factor);
template <class... Policies>
class pipeline {
 public:
  /// The policies, outermost first. A stateful policy's clock becomes the
  /// pipeline's: time reaches every policy through one clock. Throws
  /// std::invalid_argument naming the policy when two policies read
  /// different clocks. The default operation name is the first one a policy
  /// knows (default_operation(), e.g. a timeout built from an operation_type).
  explicit pipeline(Policies... policies) : policies_{std::move(policies)...} {
    std::apply(
        [&](const Policies&... ps) {
          (adopt_clock(ps), ...);
          (adopt_operation(ps), ...);
        },
        policies_);
    check_clock(clock_, "resilient");
  }

  /// Runs the callable `inner(ctx) -> outcome<T>` through every policy.
  template <class Inner>
  auto run(call_context& ctx, Inner& inner) const {
    static constexpr detail::opaque_call opaque{};
    return step<0>(ctx, inner, opaque);
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
    ctx.executor = &executor_;
    if (ctx.operation.empty()) ctx.operation = operation_;
    auto inner = [&](call_context& c) { return detail::invoke_to_outcome(f, c, args...); };
    const detail::bound_call<std::remove_reference_t<F>, pipeline, std::remove_reference_t<Args>...> call{
        &f, this, {args...}};
    return step<0>(ctx, inner, call);
  }

  /// Calls f(args...) through the policies on the executor; the future holds
  /// the value or the failure (the user's exception, or the rejection's
  /// exception type). f and the arguments are copied (moved) into the call.
  template <class F, class... Args>
  auto async(F&& f, Args&&... args) const {
    return async_with({}, std::forward<F>(f), std::forward<Args>(args)...);
  }

  /// async with per-call options (the option strings are copied).
  template <class F, class... Args>
  auto async_with(const call_options& options, F&& f, Args&&... args) const {
    if constexpr (detail::only_callable_with_rvalues<std::decay_t<F>, std::decay_t<Args>...>) {
      static_assert(!detail::only_callable_with_rvalues<std::decay_t<F>, std::decay_t<Args>...>,
                    RESILIENCE_DETAIL_MOVE_ONLY_ARGUMENT);
      return future<detail::rvalue_call_result_t<std::decay_t<F>, std::decay_t<Args>...>>{};
    } else {
      return async_checked(options, std::forward<F>(f), std::forward<Args>(args)...);
    }
  }

 private:
  template <class F, class... Args>
  auto async_checked(const call_options& options, F&& f, Args&&... args) const {
    using owned = detail::owned_call<std::decay_t<F>, pipeline, std::decay_t<Args>...>;
    call_context base{clock_, options};
    if (base.operation.empty()) base.operation = operation_;
    return owned::start(
        std::make_shared<owned>(std::forward<F>(f), *this, base, options.stop, std::forward<Args>(args)...));
  }

 public:
  /// A resilient<F, Policies...> calling f through copies of these policies.
  template <class F>
  resilient<std::decay_t<F>, Policies...> wrap(F&& f) const& {
    return std::apply(
               [&](const Policies&... ps) {
                 return resilient<std::decay_t<F>, Policies...>{std::forward<F>(f), ps...};
               },
               policies_)
        .with_clock(clock_)
        .with_executor(executor_)
        .with_operation(operation_);
  }

  /// Runs detached timeouts and async calls on `ex` (default: default_executor()).
  pipeline& with_executor(executor_ref ex) & noexcept {
    executor_ = std::move(ex);
    return *this;
  }
  pipeline&& with_executor(executor_ref ex) && noexcept {
    executor_ = std::move(ex);
    return std::move(*this);
  }
  /// The executor of this pipeline's detached and async work (empty = default).
  const executor_ref& executor() const noexcept { return executor_; }

  /// Uses `clk` for every call's context (the default is the real steady
  /// clock, or the clock of the stateful policies). Throws
  /// std::invalid_argument naming the policy when a stateful policy reads
  /// another clock: a breaker on the real clock would never see `clk` move.
  pipeline& with_clock(clock_ref clk) & {
    check_clock(clk, "with_clock");
    clock_ = std::move(clk);
    return *this;
  }
  pipeline&& with_clock(clock_ref clk) && {
    check_clock(clk, "with_clock");
    clock_ = std::move(clk);
    return std::move(*this);
  }
  /// The clock of this pipeline's calls.
  const clock_ref& clock() const noexcept { return clock_; }

  /// Names every call that gives no call_options::operation (for metrics,
  /// logs and events). Default: the first a policy knows, else "".
  pipeline& with_operation(std::string operation) & {
    operation_ = std::move(operation);
    return *this;
  }
  pipeline&& with_operation(std::string operation) && {
    operation_ = std::move(operation);
    return std::move(*this);
  }
  /// The operation name of calls that give none.
  const std::string& operation() const noexcept { return operation_; }

  /// The policies, outermost first.
  const std::tuple<Policies...>& policies() const noexcept { return policies_; }

 private:
  template <class P>
  void adopt_operation(const P& p) {
    if constexpr (requires { std::string_view{p.default_operation()}; })
      if (operation_.empty()) operation_ = std::string_view{p.default_operation()};
  }

  template <class, class...>
  friend class resilient;
  template <class, class, class...>
  friend struct detail::owned_call;

  template <class P>
  void adopt_clock(const P& p) noexcept {
    if constexpr (detail::reads_clock<P>) {
      if (!adopted_) clock_ = p.clock();
      adopted_ = true;
    }
  }

  // Throws when a stateful policy's time line is not clk's.
  void check_clock(const clock_ref& clk, std::string_view where) const {
    std::size_t index = 0;
    std::apply([&](const Policies&... ps) { (check_policy_clock(ps, ++index, clk, where), ...); }, policies_);
  }

  template <class P>
  static void check_policy_clock(const P& p, std::size_t index, const clock_ref& clk, std::string_view where) {
    if constexpr (detail::reads_clock<P>) {
      if (p.clock().same_time_line(clk)) return;
      std::string what{where};
      what += ": policy " + std::to_string(index) + " (" + detail::policy_name<P>();
      std::string_view name;
      if constexpr (requires { std::string_view{p.name()}; }) name = p.name();
      else if constexpr (requires { std::string_view{p.key()}; }) name = p.key();
      if (!name.empty()) what += " '" + std::string{name} + "'";
      what += ") reads another clock than this pipeline; build it on the pipeline's clock (its options' clock)";
      throw std::invalid_argument{what};
    }
  }

  template <std::size_t I, class Inner, class Call>
  auto step(call_context& ctx, Inner& inner, const Call& call) const {
    if constexpr (I == sizeof...(Policies)) {
      return inner(ctx);
    } else {
      auto next = [this, &inner, &call](call_context& c) { return step<I + 1>(c, inner, call); };
      return run_policy(std::get<I>(policies_), ctx, next, call_view<I, Call>{call});
    }
  }

  // One level: the `policy` concept is checked here, where the outcome of
  // the levels inside is known, so a wrong policy fails with one diagnostic.
  // What a policy's own code or a user hook it runs (a predicate, a key
  // function, an executor's post, a clock) throws becomes this call's
  // failure: try_call never terminates. next() never throws (the level
  // inside catches too), so this catches only this level's own throws; on
  // the happy path a try block costs nothing with table-based unwinding.
  template <class P, class Next, class View>
  requires policy_for<P, Next, View>
  static auto run_policy(const P& p, call_context& ctx, Next& next, const View& view) {
    if constexpr (requires {
                    { p.execute(ctx, next, view) } -> detail::an_outcome;
                  }) {
      using O = std::remove_cvref_t<decltype(p.execute(ctx, next, view))>;
      try {
        return p.execute(ctx, next, view);
      } catch (...) {
        return O{std::current_exception()};
      }
    } else {
      using O = std::remove_cvref_t<decltype(p.execute(ctx, next))>;
      try {
        return p.execute(ctx, next);
      } catch (...) {
        return O{std::current_exception()};
      }
    }
  }

  std::tuple<Policies...> policies_;
  clock_ref clock_;
  executor_ref executor_;
  std::string operation_;
  bool adopted_ = false;  // clock_ came from a policy
};

namespace detail {

// The outcome type of an owned call's pipeline from level I inward.
template <class Owned, std::size_t I>
using owned_outcome_t = decltype(std::declval<Owned&>().template run_sync<I>(std::declval<call_context&>()));

// An async step's done, callable from several paths (the policy's own
// done, a throw from its code, a throw from its continuation): the first
// call wins.
template <class T>
class once_callback {
 public:
  explicit once_callback(async_callback<T> done) noexcept : done_{std::move(done)} {}
  void fire(outcome<T>&& o) {
    if (fired_.exchange(true, std::memory_order_acq_rel)) return;
    auto done = std::move(done_);
    done(std::move(o));
  }
  void fail(std::exception_ptr e) { fire(outcome<T>{std::move(e)}); }

 private:
  async_callback<T> done_;
  std::atomic<bool> fired_{false};
};

// One call that owns everything it touches: copies of the callable, the
// arguments, the policies (stateful ones share their state), the clock, the
// executor, the operation and tenant strings, and its own call_context.
// async() and call_view::launch() run it; every pending step holds a
// shared_ptr to it, so abandoned work stays valid until it ends.
template <class F, class Pipeline, class... A>
struct owned_call {
  template <class G, class... B>
  owned_call(G&& g, const Pipeline& p, const call_context& from, std::stop_token stop, B&&... a)
      : f{std::forward<G>(g)},
        pl{p},
        args{std::forward<B>(a)...},
        clock{from.clock()},
        exec{from.executor ? *from.executor : p.executor()},
        operation{from.operation},
        tenant{from.tenant},
        ctx{clock, call_options{operation, tenant, std::move(stop), from.deadline}},
        bound{&f, &pl, std::apply([](A&... x) { return std::tuple<A&...>{x...}; }, args)} {
    ctx.attempt = from.attempt;
    ctx.executor = &exec;
  }
  owned_call(const owned_call&) = delete;
  owned_call& operator=(const owned_call&) = delete;

  auto invoke(call_context& c) {
    return std::apply([&](A&... a) { return invoke_to_outcome(f, c, a...); }, args);
  }

  // The sync pipeline from level I inward, on this thread.
  template <std::size_t I>
  auto run_sync(call_context& c) {
    auto inner = [this](call_context& cc) { return invoke(cc); };
    return pl.template step<I>(c, inner, bound);
  }

  static constexpr std::size_t levels =
      std::tuple_size_v<std::remove_cvref_t<decltype(std::declval<Pipeline&>().policies())>>;

  // Starts level I of the async pipeline; done is called exactly once.
  template <std::size_t I, class Self>
  static void start_async(const std::shared_ptr<Self>& self, call_context& c,
                          async_callback<outcome_value_t<owned_outcome_t<Self, I>>> done) {
    if constexpr (I == levels) {
      done(self->invoke(c));
    } else {
      using U = outcome_value_t<owned_outcome_t<owned_call, I + 1>>;
      using P = std::tuple_element_t<I, std::remove_cvref_t<decltype(self->pl.policies())>>;
      const P& p = std::get<I>(self->pl.policies());
      auto next = [self](call_context& c2, async_callback<U> d) { start_async<I + 1>(self, c2, std::move(d)); };
      const call_view<I, bound_type> view{self->bound};
      if constexpr (requires {
                      { p.execute_async(c, next, view, std::move(done)) }
                      noexcept;
                    }) {
        // A noexcept async form promises done exactly once and continuations
        // that never throw (retry's loop): no guard, no allocation for one.
        p.execute_async(c, next, view, std::move(done));
      } else if constexpr (requires { p.execute_async(c, next, view, std::move(done)); }) {
        // The policy's done, its continuations and execute_async itself may
        // run user code that throws: the first of done(outcome) or a throw
        // ends level I, with that exception as its failure; later ones are dropped.
        using R = outcome_value_t<owned_outcome_t<Self, I>>;
        auto once = std::make_shared<once_callback<R>>(std::move(done));
        auto guarded = [self, once](call_context& c2, async_callback<U> d) {
          start_async<I + 1>(self, c2, async_callback<U>{[once, d = std::move(d)](outcome<U> o) mutable {
                               try {
                                 d(std::move(o));
                               } catch (...) {
                                 once->fail(std::current_exception());
                               }
                             }});
        };
        try {
          p.execute_async(c, guarded, view, async_callback<R>{[once](outcome<R> o) { once->fire(std::move(o)); }});
        } catch (...) {
          once->fail(std::current_exception());
        }
      } else {
        done(self->template run_sync<I>(c));
      }
    }
  }

  // Posts the whole call to the executor; done(outcome) is called once, on
  // whichever thread ends the call. What post throws is thrown here (the
  // executor refused the task, and destroyed it, done and all).
  template <class Done>
  static void post_start(std::shared_ptr<owned_call> self, Done&& done) {
    using value_type = outcome_value_t<owned_outcome_t<owned_call, 0>>;
    auto* s = self.get();
    s->exec.post([self = std::move(self), done = std::forward<Done>(done)]() mutable {
      start_async<0>(self, self->ctx, async_callback<value_type>{std::move(done)});
    });
  }

  // Posts the whole call to the executor; the future gets its outcome.
  static auto start(std::shared_ptr<owned_call> self) {
    using value_type = outcome_value_t<owned_outcome_t<owned_call, 0>>;
    future_promise<value_type> promise;
    future<value_type> result{promise.state()};
    try {
      post_start(std::move(self),
                 [promise = std::move(promise)](outcome<value_type> o) mutable { promise.set(std::move(o)); });
    } catch (...) {
      // The executor refused the task (and destroyed it, promise and all,
      // which set broken_promise): the call's failure is what post threw.
      future_promise<value_type> failed;
      future<value_type> refused{failed.state()};
      failed.fail(std::current_exception());
      return refused;
    }
    return result;
  }

  using bound_type = bound_call<F, Pipeline, A...>;

  F f;
  Pipeline pl;
  std::tuple<A...> args;
  clock_ref clock;
  executor_ref exec;
  std::string operation;
  std::string tenant;
  call_context ctx;
  bound_type bound;
};

}  // namespace detail

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
      else return std::invoke(f_, std::forward<Args>(args)...);
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
    if constexpr (detail::only_callable_with_rvalues<const F, std::remove_reference_t<Args>...>) {
      static_assert(!detail::only_callable_with_rvalues<const F, std::remove_reference_t<Args>...>,
                    RESILIENCE_DETAIL_MOVE_ONLY_ARGUMENT);
      return outcome<detail::rvalue_call_result_t<const F, std::remove_reference_t<Args>...>>{std::exception_ptr{}};
    } else {
      return try_call_checked(options, args...);
    }
  }

  /// Calls through the policies on the executor and returns at once; the
  /// future holds the value or the failure (the user's exception object, or
  /// the rejection's exception type). The arguments are copied (or moved)
  /// into the call, so they may die before it ends. Retry waits are timers:
  /// no thread is held during a backoff.
  template <class... Args>
  auto async(Args&&... args) const {
    return async_with({}, std::forward<Args>(args)...);
  }

  /// async with per-call options (the option strings are copied).
  template <class... Args>
  auto async_with(const call_options& options, Args&&... args) const {
    return pipeline_.async_with(options, f_, std::forward<Args>(args)...);
  }

  /// `co_await r.co_call(args...)` in any coroutine: the value, or the
  /// failure thrown (defined in coro.hpp: include it to use these four).
  template <class... Args>
  auto co_call(Args&&... args) const;
  /// co_call with per-call options (the caller's stop_token cancels the call).
  template <class... Args>
  auto co_call_with(const call_options& options, Args&&... args) const;
  /// `co_await r.co_try_call(args...)`: the outcome; never throws.
  template <class... Args>
  auto co_try_call(Args&&... args) const;
  /// co_try_call with per-call options.
  template <class... Args>
  auto co_try_call_with(const call_options& options, Args&&... args) const;

  /// Runs detached timeouts and async calls on `ex` (default: default_executor()).
  resilient& with_executor(executor_ref ex) & noexcept {
    pipeline_.with_executor(std::move(ex));
    return *this;
  }
  resilient&& with_executor(executor_ref ex) && noexcept {
    pipeline_.with_executor(std::move(ex));
    return std::move(*this);
  }

  /// Names every call that gives no call_options::operation (for metrics,
  /// logs and events), e.g. with_operation("factor_lookup"). Default: the
  /// first name a policy knows (a timeout built from an operation_type), else "".
  resilient& with_operation(std::string operation) & {
    pipeline_.with_operation(std::move(operation));
    return *this;
  }
  resilient&& with_operation(std::string operation) && {
    pipeline_.with_operation(std::move(operation));
    return std::move(*this);
  }

  /// Uses `clk` for every call's context (the default is the real steady
  /// clock, or the clock of the stateful policies); throws
  /// std::invalid_argument naming a stateful policy that reads another clock.
  resilient& with_clock(clock_ref clk) & {
    pipeline_.with_clock(std::move(clk));
    return *this;
  }
  resilient&& with_clock(clock_ref clk) && {
    pipeline_.with_clock(std::move(clk));
    return std::move(*this);
  }

  /// The wrapped callable.
  const F& callable() const noexcept { return f_; }
  /// The policies and clock.
  const pipeline<Policies...>& policies() const noexcept { return pipeline_; }

 private:
  template <class... Args>
  auto try_call_checked(const call_options& options, Args&... args) const noexcept {
    call_context ctx{pipeline_.clock(), options};
    ctx.executor = &pipeline_.executor();
    if (ctx.operation.empty()) ctx.operation = pipeline_.operation();
    auto inner = [&](call_context& c) { return detail::invoke_to_outcome(f_, c, args...); };
    const detail::bound_call<const F, pipeline<Policies...>, std::remove_reference_t<Args>...> call{
        &f_, &pipeline_, {args...}};
    return pipeline_.template step<0>(ctx, inner, call);
  }

  F f_;
  pipeline<Policies...> pipeline_;
};

namespace detail {

// Starts r's call as async() does (the whole call posted to the executor,
// with copies of the callable and arguments) but without a future:
// done(outcome, keep) is called once, on the thread that ends the call,
// where `keep` holds the call's owned state (a rejection's views point into
// it). What the executor's post throws is thrown here. For co_call and
// resilient_function.
template <class R, class Done, class... A>
void post_call(const R& r, const call_options& options, Done&& done, A&&... args) {
  using F = std::remove_cvref_t<decltype(r.callable())>;
  using Pipeline = std::remove_cvref_t<decltype(r.policies())>;
  if constexpr (only_callable_with_rvalues<F, std::decay_t<A>...>) {
    static_assert(!only_callable_with_rvalues<F, std::decay_t<A>...>, RESILIENCE_DETAIL_MOVE_ONLY_ARGUMENT);
  } else {
    using owned = owned_call<F, Pipeline, std::decay_t<A>...>;
    const Pipeline& pl = r.policies();
    call_context base{pl.clock(), options};
    if (base.operation.empty()) base.operation = pl.operation();
    auto call = std::make_shared<owned>(r.callable(), pl, base, options.stop, std::forward<A>(args)...);
    std::shared_ptr<void> keep = call;
    owned::post_start(std::move(call), [done = std::forward<Done>(done), keep = std::move(keep)](auto o) mutable {
      done(std::move(o), std::move(keep));
    });
  }
}

}  // namespace detail

template <class F, class... Policies>
resilient(F, Policies...) -> resilient<F, Policies...>;

template <class... Policies>
pipeline(Policies...) -> pipeline<Policies...>;

}  // namespace v1
}  // namespace resilience
