// resilience/policy.hpp: the policy protocol, everything a policy's header needs.
//
//   struct log_calls {  // a policy of your own
//     template <class Next>
//     auto execute(resilience::call_context& ctx, Next&& next) const {
//       std::clog << "calling " << ctx.operation << '\n';
//       return next(ctx);  // the rest of the pipeline: an outcome<T>
//     }
//   };
//   static_assert(resilience::policy<log_calls, double>);
//
// A policy is a type with `p.execute(ctx, next) -> outcome<U>` where next(ctx)
// runs the rest of the pipeline and returns its outcome<T> (the `policy`
// concept). Optional forms, found by their signatures:
//   execute(ctx, next, call)              `call` (a call_view) describes the
//       call: its arguments, whether the callable is stop-aware, and launch(),
//       which runs an owning copy of the rest of the pipeline on an executor;
//   execute_async(ctx, next, call, done)  the policy's async form for
//       async(): next(ctx, cb) starts the rest of the pipeline, cb and done
//       are called exactly once, on any thread; ctx stays valid until done
//       is called. Declared noexcept, it promises that it never throws, that
//       its continuations never throw and that it calls done exactly once:
//       the pipeline then runs it without its guard (retry's loop does so).
// A policy without execute_async runs its sync execute on an executor thread
// under async(). Composition lives in resilient.hpp; a policy never needs it.
#pragma once

#include <concepts>
#include <cstddef>
#include <stop_token>
#include <tuple>
#include <type_traits>
#include <utility>

#include "context.hpp"
#include "executor.hpp"
#include "outcome.hpp"

namespace resilience {
inline namespace v1 {

namespace detail {

template <class T>
struct is_outcome : std::false_type {};
template <class T>
struct is_outcome<outcome<T>> : std::true_type {};

/// A type that is some resilience::outcome<T> (references and cv stripped).
template <class O>
concept an_outcome = is_outcome<std::remove_cvref_t<O>>::value;

// A call known only as an opaque `inner` (pipeline::run): no arguments, no launch.
struct opaque_call {
  static constexpr bool stop_aware = true;  // unknown: assume the inner call listens
  static constexpr bool can_launch = false;
  const std::tuple<>& arguments() const noexcept {
    static constexpr std::tuple<> none{};
    return none;
  }
};

// The rest of a pipeline whose callable returns T, as the policy concept sees it.
template <class T>
struct next_archetype {
  outcome<T> operator()(call_context&) const;
};

}  // namespace detail

/// The continuation of an async step: called exactly once with the outcome.
template <class T>
using async_callback = detail::unique_function<void(outcome<T>)>;

/// What a policy at pipeline level I may learn about the call (third
/// argument of `execute(ctx, next, call)` and `execute_async`).
template <std::size_t I, class Bound>
class call_view {
 public:
  explicit call_view(const Bound& b) noexcept : b_{&b} {}
  /// True when the callable takes a std::stop_token first.
  static constexpr bool stop_aware = Bound::stop_aware;
  /// True when launch() is available (callable, arguments and policies copyable).
  static constexpr bool can_launch = Bound::can_launch;
  /// The call's arguments, as a tuple of lvalue references.
  decltype(auto) arguments() const noexcept { return b_->arguments(); }
  /// Runs the policies inside this one and the callable on ctx's executor,
  /// with copies of the callable, arguments and context (operation and
  /// tenant strings copied, stop = `stop`) owned by the task; done(outcome)
  /// is called on the executor thread. Nothing refers to the caller's stack.
  template <class Done>
  requires Bound::can_launch void launch(const call_context& ctx, std::stop_token stop, Done&& done) const {
    b_->template launch<I + 1>(ctx, std::move(stop), std::forward<Done>(done));
  }

 private:
  const Bound* b_;
};

/// P runs a call whose rest of the pipeline is `Next` (`next(ctx)` returns an
/// outcome): `p.execute(ctx, next, call)` or `p.execute(ctx, next)` returns an
/// outcome. `Call` is the call_view the pipeline passes (a fallback that
/// replays the call's arguments needs the real one, not the default's none).
template <class P, class Next, class Call = call_view<0, detail::opaque_call>>
concept policy_for = std::invocable<Next&, call_context&> &&
    detail::an_outcome<std::invoke_result_t<Next&, call_context&>> &&(
        requires(const P& p, call_context& ctx, Next& next, const Call& call) {
          { p.execute(ctx, next, call) } -> detail::an_outcome;
        } ||
        requires(const P& p, call_context& ctx, Next& next) {
          { p.execute(ctx, next) } -> detail::an_outcome;
        });

/// P is a policy for calls whose callable returns T (what `resilient` and
/// `pipeline` require of each policy, with the outcome the level inside returns).
template <class P, class T>
concept policy = policy_for<P, detail::next_archetype<T>>;

}  // namespace v1
}  // namespace resilience
