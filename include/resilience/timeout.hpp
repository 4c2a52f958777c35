// resilience/timeout.hpp: the timeout policy and the seed's per-operation limits.
//
// Two ways to give up on a call at its deadline:
//  - cooperative: the callable runs on the caller's thread and a timer asks it
//    to stop (through the std::stop_token it takes first); the caller gets
//    timeout_error when the timer fired, whatever the callable returned after.
//  - detached: the callable runs on an executor and the caller waits on the
//    clock; at the deadline the caller gets timeout_error and the abandoned
//    work finishes in the background with copies of its arguments, its
//    result dropped.
// The default (timeout_mode::automatic) is cooperative for stop-aware
// callables and detached for the others.
//
//   resilience::resilient lookup{[](std::stop_token st, const std::string& activity) { return query(st, activity); },
//                                resilience::retry{}, resilience::timeout{resilience::operation_type::factor_lookup}};
//                                // presets.hpp
//   double f = lookup("electricity");  // each attempt gets 5 s; throws timeout_error after the last
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <concepts>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "clock.hpp"
#include "context.hpp"
#include "events.hpp"
#include "executor.hpp"
#include "metric_snapshot.hpp"
#include "outcome.hpp"
#include "policy.hpp"

namespace resilience {
inline namespace v1 {

/// timeouts_total{operation}, driven by timeout_occurred_event.
inline constexpr metric_family timeouts_family{"timeouts_total", metric_type::counter,
                                               "Calls abandoned by a timeout policy.", 19};
inline const metric_families timeout_metric_families{timeouts_family};

namespace detail {
inline constexpr event_metric timeout_occurred_metrics[] = {{&timeouts_family, {{{"operation", "operation"}}}}};
}  // namespace detail

/// A timeout policy abandoned a call. Fields: limit.
inline constexpr event_kind timeout_occurred_event{
    "timeout_occurred", log_level::warning, {.operation = true, .metrics = detail::timeout_occurred_metrics}};

/// How a timeout abandons a call.
enum class timeout_mode : std::uint8_t {
  automatic,    ///< cooperative for callables taking a std::stop_token, detached otherwise
  cooperative,  ///< inline on the caller's thread; a timer requests stop at the deadline
  detached,     ///< on an executor; the caller stops waiting at the deadline
};

/// How long a detached timeout's caller polls for the result before it
/// sleeps until the deadline (on the real clock only): 20 µs.
inline constexpr duration detached_spin = std::chrono::microseconds{20};

/// A timeout policy's rejection kind: "timeout"; the rejection's `value` is
/// the limit that passed. The only refusal a circuit breaker counts as the
/// dependency's failure.
class timeout_kind_t final : public rejection_kind {
 public:
  constexpr timeout_kind_t() noexcept : rejection_kind{"timeout", /*dependency_failure=*/true} {}
  /// The limit that passed.
  static constexpr duration limit(const rejection& r) noexcept { return r.value; }
  std::string message(const rejection& r) const override;
  [[noreturn]] void raise(const rejection& r) const override;
};
/// The kind of a timeout's rejection.
inline constexpr timeout_kind_t timeout_kind{};

/// A timeout policy gave up waiting.
class timeout_error : public rejected_error {
 public:
  explicit timeout_error(duration limit, std::string source = {})
      : rejected_error{timeout_kind, source, duration::zero(),
                       detail::named("timeout", source) + ": call exceeded " + detail::seconds_text(limit)},
        limit_{limit} {}
  /// The limit that was exceeded.
  duration limit() const noexcept { return limit_; }

 private:
  duration limit_;
};

inline std::string timeout_kind_t::message(const rejection& r) const {
  return detail::named("timeout", r.source) + ": call exceeded " + detail::seconds_text(r.value);
}
inline void timeout_kind_t::raise(const rejection& r) const { throw timeout_error{r.value, std::string{r.source}}; }

/// Settings of a timeout policy.
struct timeout_options {
  duration limit = std::chrono::seconds{10};    ///< the time a call may take (> 0, <= max_duration); default 10 s
  timeout_mode mode = timeout_mode::automatic;  ///< see timeout_mode
  std::string name{};                           ///< reported as the rejection's source and in timeout_error
};

/// Gives up on a call after a limit, returning a timeout rejection
/// (timeout_error at the API edge), and narrows the call's deadline so that
/// policies inside it (an inner retry) never wait past it.
class timeout {
 public:
  /// A timeout from options; throws std::invalid_argument when limit <= 0.
  explicit timeout(timeout_options options)
      : limit_{options.limit}, mode_{options.mode}, shared_{make_shared(std::move(options.name))} {
    if (limit_ <= duration::zero()) throw std::invalid_argument{"timeout: limit must be > 0"};
    checked_duration(limit_, "timeout: limit");
  }
  /// A timeout of `limit` (any chrono duration; <= 0, NaN or > max_duration is rejected).
  template <class Rep, class Period>
  explicit timeout(std::chrono::duration<Rep, Period> limit, timeout_mode mode = timeout_mode::automatic)
      : timeout{timeout_options{checked(limit), mode, {}}} {}
  /// The default limit of a kind of operation, named after it: any `op`
  /// with default_timeout(op) and to_string(op) found by ADL, the latter
  /// viewing static storage (presets.hpp's operation_type).
  template <class Operation>
  requires requires(Operation op) {
    { default_timeout(op) } -> std::convertible_to<duration>;
    { to_string(op) } -> std::convertible_to<std::string_view>;
  }
  explicit timeout(Operation op, timeout_mode mode = timeout_mode::automatic)
      : timeout{timeout_options{default_timeout(op), mode, std::string{to_string(op)}}} {
    operation_ = to_string(op);
  }

  /// The limit.
  duration limit() const noexcept { return limit_; }
  /// The mode.
  timeout_mode mode() const noexcept { return mode_; }
  /// The name given in the options ("" by default; the operation type's name when built from one).
  const std::string& name() const noexcept { return shared_->name; }
  /// The operation type's name when built from one, else "": a wrapper names
  /// calls that give no operation after it.
  std::string_view default_operation() const noexcept { return operation_; }
  /// This policy's events (timeout_occurred); copies of the policy share it.
  event_hub& events() const noexcept { return shared_->hub; }

  /// Runs next with the limit, choosing the mode from what the wrapper tells
  /// about the callable.
  template <class Next, class Call>
  auto execute(call_context& ctx, Next&& next, const Call& call) const {
    using O = std::remove_cvref_t<std::invoke_result_t<Next&, call_context&>>;
    if constexpr (Call::can_launch) {
      if (mode_ == timeout_mode::detached || (mode_ == timeout_mode::automatic && !Call::stop_aware))
        return run_detached<O>(ctx, call);
    }
    return run_cooperative(ctx, next, Call::stop_aware);
  }

  /// Without a call description (a hand-made pipeline), the call cannot be
  /// moved off the caller's stack: the timeout is cooperative.
  template <class Next>
  auto execute(call_context& ctx, Next&& next) const {
    return run_cooperative(ctx, next, true);
  }

  /// The async form: a timer completes the call with a timeout rejection at
  /// the deadline (on the timer's thread, so a busy executor cannot delay
  /// it) and asks the inner work to stop; the inner work goes on, with its
  /// own copy of the context, and its late result is dropped.
  template <class T, class Next, class Call>
  void execute_async(call_context& ctx, Next& next, const Call&, async_callback<T> done) const {
    struct slot {
      slot(const call_context& c, async_callback<T> d, Next n, std::shared_ptr<const shared_state> sh, duration l)
          : inner{c}, done{std::move(d)}, keep{std::move(n)}, shared{std::move(sh)}, limit{l} {}
      call_context inner;
      std::stop_source stop;
      std::atomic<bool> finished{false};
      timer_id timer = 0;
      async_callback<T> done;
      Next keep;  // holds the call's owned state alive for as long as the timer may fire
      std::shared_ptr<const shared_state> shared;
      duration limit;
      struct forward_stop {
        std::stop_source* to;
        void operator()() const noexcept { to->request_stop(); }
      };
      std::optional<std::stop_callback<forward_stop>> caller_stop;  // the caller's stop reaches the inner work
    };
    auto s = std::make_shared<slot>(ctx, std::move(done), next, shared_, limit_);
    s->inner.narrow_deadline(deadline_from(ctx));
    s->inner.stop = s->stop.get_token();
    if (ctx.stop.stop_possible()) s->caller_stop.emplace(ctx.stop, typename slot::forward_stop{&s->stop});
    s->timer = ctx.clock().call_at(s->inner.deadline, [s] {
      if (s->finished.exchange(true)) return;
      s->stop.request_stop();
      emit_timeout(*s->shared, s->inner.operation, s->limit, s->inner.now());
      // Delivered on the timer's thread: the executor may be busy with the very work that hangs.
      s->done(outcome<T>{rejection_for(*s->shared, s->limit)});
    });
    next(s->inner, async_callback<T>{[s](outcome<T> o) {
           if (s->finished.exchange(true)) return;  // timed out already: the late result is dropped
           s->inner.clock().cancel(s->timer);
           s->done(std::move(o));
         }});
  }

 private:
  struct shared_state {
    std::string name;
    mutable event_hub hub;
  };

  static std::shared_ptr<const shared_state> make_shared(std::string name) {
    auto s = std::make_shared<shared_state>();
    s->name = std::move(name);
    return s;
  }

  template <class Rep, class Period>
  static duration checked(std::chrono::duration<Rep, Period> d) {
    if constexpr (std::is_floating_point_v<Rep>) {
      if (std::isnan(d.count())) throw std::invalid_argument{"timeout: limit must not be NaN"};
      if (!(d.count() > 0)) throw std::invalid_argument{"timeout: limit must be > 0"};
    }
    return checked_duration(d, "timeout: limit");
  }

  static rejection rejection_for(const shared_state& s, duration limit) noexcept {
    return rejection{.kind = &timeout_kind, .source = s.name, .value = limit};
  }

  static void emit_timeout(const shared_state& s, std::string_view operation, duration limit, time_point at) noexcept {
    detail::emit(&s.hub, [&] {
      event e{timeout_occurred_event};
      e.at(at).with_operation(operation).with("limit", limit);
      return e;
    });
  }

  time_point deadline_from(const call_context& ctx) const noexcept {
    const time_point now = ctx.now();
    return saturating_add(now, limit_);
  }

  // Restores the caller's deadline when the attempt ends, so that an outer
  // retry's next attempt gets a fresh limit.
  struct deadline_restore {
    call_context& ctx;
    time_point deadline;
    ~deadline_restore() { ctx.deadline = deadline; }
  };

  // Gives the inner call this timeout's token, and the caller's back after.
  // Moves, not copies: a token copy is a reference-count update.
  struct token_swap {
    token_swap(call_context& c, std::stop_token mine) noexcept
        : ctx{c}, caller{std::exchange(c.stop, std::move(mine))} {}
    token_swap(const token_swap&) = delete;
    token_swap& operator=(const token_swap&) = delete;
    ~token_swap() { ctx.stop = std::move(caller); }
    call_context& ctx;
    std::stop_token caller;
  };

  // For any clock but the real one: a call_at timer sharing its flag with the caller.
  struct clock_timer {
    std::stop_source stop{std::nostopstate};
    std::atomic<bool> fired{false};
  };

  // The outcome of a call whose timer fired, whatever the call returned.
  template <class O>
  [[gnu::cold, gnu::noinline]] O timed_out(const call_context& ctx) const {
    emit_timeout(*shared_, ctx.operation, limit_, ctx.now());
    return O{rejection_for(*shared_, limit_)};
  }

  template <class Next>
  auto run_cooperative(call_context& ctx, Next& next, bool request_stop) const {
    using O = std::remove_cvref_t<std::invoke_result_t<Next&, call_context&>>;
    const time_point deadline = deadline_from(ctx);
    if (deadline == no_deadline) return next(ctx);  // a limit beyond the end of time never fires
    const deadline_restore restore{ctx, ctx.deadline};
    ctx.narrow_deadline(deadline);

    if (ctx.clock().is_steady()) {
      // The hot path: a slot of this thread's, armed and disarmed without a lock.
      if (!request_stop) {
        detail::deadline_timer timer{deadline, limit_, nullptr};
        O result = next(ctx);
        if (timer.disarm()) [[unlikely]]
          result = timed_out<O>(ctx);
        return result;
      }
      std::stop_source stop;
      const token_swap swap{ctx, stop.get_token()};
      std::optional<std::stop_callback<forward_stop>> link;
      if (swap.caller.stop_possible()) link.emplace(swap.caller, forward_stop{&stop});
      detail::deadline_timer timer{deadline, limit_, &stop};
      O result = next(ctx);
      if (timer.disarm()) [[unlikely]]
        result = timed_out<O>(ctx);
      return result;
    }

    auto t = std::make_shared<clock_timer>();
    std::optional<token_swap> swap;
    if (request_stop) {
      t->stop = std::stop_source{};
      swap.emplace(ctx, t->stop.get_token());
    }
    const timer_id id = ctx.clock().call_at(deadline, [t] {
      t->fired.store(true, std::memory_order_release);
      t->stop.request_stop();
    });
    std::optional<O> result;
    {
      std::optional<std::stop_callback<forward_stop>> link;
      if (swap && swap->caller.stop_possible()) link.emplace(swap->caller, forward_stop{&t->stop});
      result.emplace(next(ctx));
    }
    ctx.clock().cancel(id);
    if (t->fired.load(std::memory_order_acquire)) return timed_out<O>(ctx);
    return std::move(*result);
  }

  struct forward_stop {
    std::stop_source* to;
    void operator()() const noexcept { to->request_stop(); }
  };

  // The detached wait: the launched copy reports into `slot`. One stop
  // source serves both directions: the work requests stop on it when done
  // (waking a sleeping caller), the caller at the deadline (stopping a
  // stop-aware callable, or an inner retry's wait).
  template <class O>
  struct detached_slot {
    std::atomic<bool> done{false};
    std::optional<O> result;  // written before `done`, read only after it
    std::stop_source stop;
  };

  template <class O, class Call>
  O run_detached(call_context& ctx, const Call& call) const {
    if (ctx.stop.stop_requested()) return O{rejection{.kind = &cancelled_kind, .source = shared_->name}};
    const time_point deadline = std::min(deadline_from(ctx), ctx.deadline);
    auto slot = std::make_shared<detached_slot<O>>();
    call_context inner = ctx;
    inner.narrow_deadline(deadline);
    call.launch(inner, slot->stop.get_token(), [slot](auto&& o) {
      slot->result.emplace(std::move(o));
      slot->done.store(true, std::memory_order_release);
      slot->stop.request_stop();
    });
    const auto done = [&] { return slot->done.load(std::memory_order_acquire); };
    {
      std::optional<std::stop_callback<forward_stop>> link;
      if (ctx.stop.stop_possible()) link.emplace(ctx.stop, forward_stop{&slot->stop});
      // On the real clock, poll briefly before sleeping: a short call then
      // costs no kernel wake-up. Other clocks sleep at once, so a test sees
      // the caller parked.
      const bool quick = ctx.clock().is_steady() &&
                         detail::spin_until(ctx.clock(), std::min(deadline, saturating_add(ctx.now(), detached_spin)),
                                            [&] { return done() || slot->stop.stop_requested(); });
      if (!quick) ctx.clock().sleep_until(deadline, slot->stop.get_token());
    }
    if (done()) return std::move(*slot->result);
    slot->stop.request_stop();  // a stop-aware callable may end early; its result is dropped either way
    if (ctx.stop.stop_requested()) return O{rejection{.kind = &cancelled_kind, .source = shared_->name}};
    emit_timeout(*shared_, ctx.operation, limit_, ctx.now());
    return O{rejection_for(*shared_, limit_)};
  }

  duration limit_;
  timeout_mode mode_;
  std::shared_ptr<const shared_state> shared_;
  std::string_view operation_{};  // to_string(op) of the constructor's operation: static storage
};

}  // namespace v1
}  // namespace resilience
