// resilience/retry.hpp: the retry policy and its options (the HTTP
// Retry-After parser is in retry_after.hpp, included here).
//
//   resilience::resilient fetch{fetch_emission_factor,
//                               resilience::retry{{.max_retries = 3, .base_delay = 1s}}};
//   double f = fetch("electricity");  // tries again after 1 s, 2 s, 4 s; then throws the last failure
//
// Which failures retry is its `handle` (failures.hpp: exception types,
// predicates on the exception or on the result, rejection kinds); a failure
// carrying a Retry-After hint makes the wait at least that long; the wait
// never runs past the call's deadline, and a stop request ends it.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "backoff.hpp"
#include "clock.hpp"
#include "context.hpp"
#include "errors.hpp"
#include "events.hpp"
#include "failures.hpp"
#include "metric_snapshot.hpp"
#include "outcome.hpp"
#include "policy.hpp"
#include "retry_after.hpp"

namespace resilience {
inline namespace v1 {

/// retry_attempts_total{operation}, driven by retry_attempted_event.
inline constexpr metric_family retry_attempts_family{"retry_attempts_total", metric_type::counter,
                                                     "Retries scheduled after a failed attempt.", 17};
/// retry_exhausted_total{operation}, driven by retries_exhausted_event.
inline constexpr metric_family retry_exhausted_family{"retry_exhausted_total", metric_type::counter,
                                                      "Calls a retry policy gave up on.", 18};
inline const metric_families retry_metric_families{retry_attempts_family, retry_exhausted_family};

namespace detail {
inline constexpr event_metric retry_attempted_metrics[] = {{&retry_attempts_family, {{{"operation", "operation"}}}}};
inline constexpr event_metric retries_exhausted_metrics[] = {{&retry_exhausted_family, {{{"operation", "operation"}}}}};
}  // namespace detail

/// A retry policy is about to wait and try again. Fields: attempt (the
/// attempt that failed, 1 = first try), delay (the wait), failure (what the
/// attempt threw or why it was rejected).
inline constexpr event_kind retry_attempted_event{
    "retry_attempted", log_level::warning, {.operation = true, .metrics = detail::retry_attempted_metrics}};
/// A retry policy gave up: attempts ran out, the deadline was near, or the
/// failure was not retryable. Fields: attempts (made in all), failure (the last).
inline constexpr event_kind retries_exhausted_event{
    "retries_exhausted", log_level::error, {.operation = true, .metrics = detail::retries_exhausted_metrics}};

/// Settings of a retry policy; every default is the seed's. Validated when
/// the retry is built.
struct retry_options {
  /// Retries after the first attempt (0 = try once); default 3, must be >= 0.
  /// Attempts are numbered in int, so INT_MAX means INT_MAX - 1 retries.
  int max_retries = 3;
  /// The first delay; default 1 s, must be in [0, max_duration].
  duration base_delay = std::chrono::seconds{1};
  /// How delays grow; default exponential (1, 2, 4, 8 s).
  backoff_strategy strategy = backoff_strategy::exponential;
  /// Growth factor of exponential backoff; default 2, must be finite and >= 1.
  double multiplier = 2.0;
  /// Cap on a computed delay (not on a server's Retry-After); default 5 min, must be >= base_delay (duration::max(): no
  /// cap).
  duration max_delay = std::chrono::minutes{5};
  /// Randomization of the delay; default none (the production preset turns it on).
  jitter_mode jitter = jitter_mode::none;
  /// Where jitter's randomness comes from; default a per-thread generator.
  random_source random{};

  /// Which failures retry; default failures::any(): every exception and every
  /// rejection kind of inner policies (an open circuit's or a rate limit's
  /// retry_after is waited out first), no returned value. A results()
  /// predicate retries a value anyway; when attempts run out, that last
  /// result is returned as it is.
  failures handle = failures::any();

  /// Called before each wait: (the attempt that failed, 1-based; the wait; the failure).
  /// An exception from it (or from a predicate) ends the call with that exception.
  std::function<void(int attempt, duration delay, const failure& failure)> on_retry{};
};

/// Retries a failed call after a backoff delay. A value: copies share only
/// their event hub.
class retry {
 public:
  /// Per-call progress of a retry loop.
  struct state {
    int attempt = 1;  ///< the attempt that just ended; next_delay advances it to the next one
    duration previous_delay = duration::zero();  ///< the backoff delay before `attempt`
  };

  /// Validates the options; throws std::invalid_argument naming the bad field.
  explicit retry(retry_options options = {})
      : options_{std::move(options)}, backoff_{checked_backoff(options_)}, events_{std::make_shared<event_hub>()} {}

  /// After an attempt ended with `result`: the delay before the next attempt,
  /// or nullopt to stop and hand `result` to the caller as it is. Applies the
  /// classification, backoff and jitter, Retry-After, the deadline and stop
  /// token of ctx, and fires on_retry and the events. Increments s.attempt
  /// when it returns a delay. Throws std::invalid_argument when handle has
  /// a results() predicate but none takes T, and what on_retry or a
  /// predicate throws.
  template <class T>
  std::optional<duration> next_delay(const call_context& ctx, const outcome<T>& result, state& s) const {
    if (result.has_value()) {
      if (!options_.handle.has_result_predicates()) return std::nullopt;
      check_result_type<T>();
      if constexpr (!std::is_void_v<T>) {
        const failure why{&*result};
        if (!options_.handle.matches(why)) return std::nullopt;
        return schedule(ctx, why, std::nullopt, s);
      } else {
        return std::nullopt;  // not reached: no results() predicate takes void
      }
    }
    const failure why = result.has_exception() ? failure{&result.exception()} : failure{&result.rejection()};
    if (out_of_attempts(ctx, s) || !options_.handle.matches(why)) {
      // Attempts are checked first: classifying an exception costs a rethrow per rule.
      give_up(ctx, why, s.attempt);
      return std::nullopt;
    }
    return schedule(ctx, why, result.retry_after(), s);
  }

  /// Runs next(ctx) until it succeeds, a failure is not retryable, attempts
  /// run out, the deadline is too near, or ctx.stop is requested; returns the
  /// last outcome unchanged. Sets ctx.attempt before each try. Never
  /// throws: what on_retry, a predicate or the clock throws becomes the
  /// call's outcome.
  template <class Next>
  auto execute(call_context& ctx, Next&& next) const {
    using result_t = std::remove_cvref_t<std::invoke_result_t<Next&, call_context&>>;
    if (options_.handle.has_result_predicates()) [[unlikely]]
      return execute_checking_results<result_t>(ctx, next);
    // The happy path stays this small (one outcome, returned in place) so
    // that compilers inline it; everything a failure needs is out of line.
    ctx.attempt = 1;
    result_t result = next(ctx);
    if (!result.has_value()) [[unlikely]]
      keep_trying(ctx, next, result);
    return result;
  }

  /// The async form (async()): the same loop, its waits timers instead of
  /// sleeps, so no thread is held during a backoff. done is called exactly
  /// once; what next_delay (on_retry, a predicate), the clock or the
  /// executor throws becomes the call's failure, so this never throws.
  template <class T, class Next, class Call>
  void execute_async(call_context& ctx, Next& next, const Call&, async_callback<T> done) const noexcept {
    try {
      auto loop = std::make_shared<async_loop<T, Next>>(*this, ctx, next, std::move(done));
      if (ctx.stop.stop_possible())
        loop->on_stop.emplace(ctx.stop, typename async_loop<T, Next>::stop_wait{loop.get()});
      loop->attempt();
    } catch (...) {  // the loop could not be allocated: done was not taken
      if (done) done(outcome<T>{std::current_exception()});
    }
  }

  /// This policy's event hub (retry_attempted, retries_exhausted); copies share it.
  event_hub& events() const noexcept { return *events_; }
  /// The options, as validated.
  const retry_options& options() const noexcept { return options_; }
  /// The delay computation built from the options.
  const resilience::backoff& backoff() const noexcept { return backoff_; }

 private:
  static resilience::backoff checked_backoff(const retry_options& o) {
    if (o.max_retries < 0) throw std::invalid_argument{"retry: max_retries must be >= 0"};
    return resilience::backoff{backoff_options{o.strategy, o.base_delay, o.multiplier, o.max_delay, o.jitter, o.random},
                               "retry"};
  }

  // Both out-of-line paths are noexcept, catching into the outcome what a
  // predicate, on_retry, the clock or a misbehaving inner policy throws: a
  // call that cannot throw costs its inlined caller no unwinding code, which
  // keeps the happy path small enough for clang to inline.
  template <class Result, class Next>
  [[gnu::noinline]] Result execute_checking_results(call_context& ctx, Next& next) const noexcept {
    try {
      check_result_type<typename Result::value_type>();
      ctx.attempt = 1;
      Result result = next(ctx);
      keep_trying(ctx, next, result);
      return result;
    } catch (...) {
      return Result{std::current_exception()};
    }
  }

  // The retry loop after a first attempt that did not simply succeed:
  // replaces `result` with each new attempt's outcome until one is final.
  template <class Next, class Result>
  [[gnu::noinline]] void keep_trying(call_context& ctx, Next& next, Result& result) const noexcept {
    try {
      state s;
      for (;;) {
        const std::optional<duration> delay = next_delay(ctx, result, s);
        if (!delay) return;
        // Clamped: the clock moved on since next_delay measured the time left.
        if (!ctx.clock().sleep_until(std::min(saturating_add(ctx.now(), *delay), ctx.deadline), ctx.stop)) {
          give_up(ctx, failure{result}, s.attempt - 1);
          return;
        }
        ctx.attempt = s.attempt;
        replace(result, next(ctx));
      }
    } catch (...) {
      replace(result, Result{std::current_exception()});
    }
  }

  // One async call's loop: next_delay decides, a timer waits, the
  // executor runs the next attempt. Holds `next` (and through it the
  // call's owned state) until it ends.
  template <class T, class Next>
  struct async_loop : std::enable_shared_from_this<async_loop<T, Next>> {
    async_loop(const retry& policy, call_context& c, const Next& n, async_callback<T>&& d)
        : p{&policy}, ctx{&c}, next{n}, done{std::move(d)} {}

    void attempt() {
      if (last && ctx->stop.stop_requested()) {  // cancelled during the wait: the last failure stands
        finish(std::move(*last));
        return;
      }
      last.reset();
      ctx->attempt = st.attempt;
      next(*ctx, async_callback<T>{[me = this->shared_from_this()](outcome<T> o) { me->after(std::move(o)); }});
    }

    // What next_delay (on_retry, predicates), the clock or the executor
    // throws ends the loop with that exception as the call's failure.
    void after(outcome<T> o) {
      try {
        const std::optional<duration> delay = p->next_delay(*ctx, o, st);
        if (!delay) {
          finish(std::move(o));
          return;
        }
        last.emplace(std::move(o));
        const time_point when = std::min(saturating_add(ctx->now(), *delay), ctx->deadline);  // never past the deadline
        const clock_ref& clk = ctx->clock();
        if (clk.auto_advancing()) {
          // Nothing else to do but wait: auto-advance jumps to `when`,
          // firing earlier timers (an outer timeout's) in deadline order first.
          clk.sleep_until(when, ctx->stop);
          post([me = this->shared_from_this()] { me->attempt(); });
          return;
        }
        waiting.store(true, std::memory_order_seq_cst);
        const timer_id id = clk.call_at(when, [me = this->shared_from_this()] {
          if (me->waiting.exchange(false)) me->wake();
        });
        timer.store(id, std::memory_order_release);
        // A stop request that came before the wait began (stop_wait ignored it).
        if (ctx->stop.stop_requested() && waiting.exchange(false)) {
          clk.cancel(id);
          wake();
        }
      } catch (...) {
        finish(outcome<T>{std::current_exception()});
      }
    }

    // The wait is over (the timer fired, or a stop request cancelled it).
    void wake() {
      // On the clock's timer thread: a throwing post must not escape there.
      try {
        post([me = this->shared_from_this()] { me->attempt(); });
      } catch (...) {
        finish(outcome<T>{std::current_exception()});
      }
    }

    // A stop request ends a wait at once (as it ends a sync retry's
    // sleep): the timer is cancelled and attempt() gives up. Whichever of
    // the timer and the stop request takes `waiting` wakes the loop.
    struct stop_wait {
      async_loop* loop;
      void operator()() const noexcept {
        // The loop may be ending on another thread: it is alive while its timer holds it.
        const auto me = loop->weak_from_this().lock();
        if (!me || !me->waiting.exchange(false)) return;
        if (const timer_id id = me->timer.load(std::memory_order_acquire)) me->ctx->clock().cancel(id);
        me->wake();
      }
    };

    void post(task t) const {
      if (ctx->executor) ctx->executor->post(std::move(t));
      else executor_ref{}.post(std::move(t));
    }

    // Calls done once; a second end (a post that ran the task, then threw) is dropped.
    void finish(outcome<T>&& o) {
      if (finished.exchange(true, std::memory_order_acq_rel)) return;
      done(std::move(o));
    }

    const retry* p;
    call_context* ctx;
    Next next;
    state st{};
    async_callback<T> done;
    std::optional<outcome<T>> last;
    std::atomic<bool> finished{false};
    std::atomic<bool> waiting{false};                      // a backoff timer is pending
    std::atomic<timer_id> timer{0};                        // the latest backoff timer
    std::optional<std::stop_callback<stop_wait>> on_stop;  // registered once, for the whole loop
  };

  template <class Result>
  static void replace(Result& slot, Result&& fresh) {
    if constexpr (std::is_move_assignable_v<Result>) {
      slot = std::move(fresh);
    } else {  // a value type without assignment (const members): rebuild in place
      static_assert(std::is_nothrow_move_constructible_v<Result>,
                    "retry: the result type must be move-assignable or nothrow-movable");
      std::destroy_at(&slot);
      std::construct_at(&slot, std::move(fresh));
    }
  }

  template <class T>
  void check_result_type() const {
    if (!options_.handle.template takes_result<T>())
      throw std::invalid_argument{"retry: handle's results() takes '" + options_.handle.result_type_names() +
                                  "' but the call returns '" + detail::type_name<T>() + "'"};
  }

  // Attempt numbers are ints: attempt INT_MAX is the last one whatever
  // max_retries says, so ++s.attempt never overflows.
  bool out_of_attempts(const call_context& ctx, const state& s) const noexcept {
    return s.attempt > options_.max_retries || s.attempt == std::numeric_limits<int>::max() ||
           ctx.stop.stop_requested();
  }

  std::optional<duration> schedule(const call_context& ctx, const failure& failure, std::optional<duration> hint,
                                   state& s) const {
    if (out_of_attempts(ctx, s)) {
      give_up(ctx, failure, s.attempt);
      return std::nullopt;
    }
    const duration computed = backoff_.delay(s.attempt, s.previous_delay);
    // A server's Retry-After is a floor, even above max_delay: asking sooner only earns another refusal.
    const duration delay = hint && *hint > computed ? *hint : computed;
    if (ctx.deadline != no_deadline && delay >= ctx.remaining()) {
      give_up(ctx, failure, s.attempt);
      return std::nullopt;
    }
    if (options_.on_retry) options_.on_retry(s.attempt, delay, failure);
    detail::emit(events_.get(), [&] {
      event e{retry_attempted_event};
      e.at(ctx.now()).with_operation(ctx.operation).with("attempt", s.attempt).with("delay", delay);
      e.with_text("failure", failure.what());
      return e;
    });
    s.previous_delay = computed;
    ++s.attempt;
    return delay;
  }

  void give_up(const call_context& ctx, const failure& failure, int attempts) const noexcept {
    detail::emit(events_.get(), [&] {
      event e{retries_exhausted_event};
      e.at(ctx.now()).with_operation(ctx.operation).with("attempts", attempts).with_text("failure", failure.what());
      return e;
    });
  }

  retry_options options_;
  resilience::backoff backoff_;
  std::shared_ptr<event_hub> events_;
};

}  // namespace v1
}  // namespace resilience
