// resilience/retry.hpp: the retry policy, its options, and a parser for the
// HTTP Retry-After header.
//
//   resilience::resilient fetch{fetch_emission_factor,
//                               resilience::retry{{.max_retries = 3, .base_delay = 1s}}};
//   double f = fetch("electricity");  // tries again after 1 s, 2 s, 4 s; then throws the last failure
//
// Which failures retry is configurable (exception types, predicates on the
// exception or on the result, rejection codes of inner policies); a failure
// carrying a Retry-After hint makes the wait at least that long; the wait
// never runs past the call's deadline, and a stop request ends it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>

#if __has_include(<cxxabi.h>)
#include <cxxabi.h>

#include <cstdlib>
#endif

#include "backoff.hpp"
#include "clock.hpp"
#include "context.hpp"
#include "errors.hpp"
#include "events.hpp"
#include "outcome.hpp"

namespace resilience {
inline namespace v1 {

namespace detail {

// A readable name of T for error messages ("http_response", not "13http_response").
template <class T>
std::string type_name() {
  const char* raw = typeid(T).name();
#if __has_include(<cxxabi.h>)
  int status = 0;
  char* demangled = abi::__cxa_demangle(raw, nullptr, nullptr, &status);
  if (status == 0 && demangled != nullptr) {
    std::string name{demangled};
    std::free(demangled);
    return name;
  }
#endif
  return raw;
}

// The one parameter type of a non-generic callable (lambda, function object
// or function pointer); no `type` member for generic lambdas.
template <class M>
struct member_call_arg {};
template <class C, class R, class A>
struct member_call_arg<R (C::*)(A)> {
  using type = A;
};
template <class C, class R, class A>
struct member_call_arg<R (C::*)(A) const> {
  using type = A;
};
template <class C, class R, class A>
struct member_call_arg<R (C::*)(A) noexcept> {
  using type = A;
};
template <class C, class R, class A>
struct member_call_arg<R (C::*)(A) const noexcept> {
  using type = A;
};
template <class F, class = void>
struct callable_arg {};
template <class F>
struct callable_arg<F, std::void_t<decltype(&F::operator())>> : member_call_arg<decltype(&F::operator())> {};
template <class R, class A>
struct callable_arg<R (*)(A), void> {
  using type = A;
};
template <class R, class A>
struct callable_arg<R (*)(A) noexcept, void> {
  using type = A;
};
template <class F, class = void>
inline constexpr bool has_callable_arg = false;
template <class F>
inline constexpr bool has_callable_arg<F, std::void_t<typename callable_arg<F>::type>> = true;

template <class E>
bool exception_is(const std::exception_ptr& e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const E&) {
    return true;
  } catch (...) {
    return false;
  }
}

template <class... E>
bool exception_is_any(const std::exception_ptr& e) noexcept {
  return (exception_is<E>(e) || ...);
}

// now + d without passing no_deadline.
inline time_point saturating_add(time_point now, duration d) noexcept {
  return d >= no_deadline - now ? no_deadline : now + d;
}

}  // namespace detail

/// A list of exception types, for retry_options::retry_on and never_retry:
/// `.never_retry = resilience::exceptions<invalid_factor_error>{}`.
template <class... E>
struct exceptions {};

/// A set of exception types, matched by catch rules (a derived exception
/// matches its base). Default-constructed: unset.
class exception_filter {
 public:
  /// Unset: the field does not take part in the decision.
  constexpr exception_filter() noexcept = default;
  /// Matches an exception of any of the types E (exceptions<> matches none).
  template <class... E>
  constexpr exception_filter(exceptions<E...>) noexcept : match_{&detail::exception_is_any<E...>} {}

  /// True when a list was given.
  explicit operator bool() const noexcept { return match_ != nullptr; }
  /// True when e is one of the listed types (false when unset).
  bool matches(const std::exception_ptr& e) const noexcept { return match_ != nullptr && e && match_(e); }

 private:
  bool (*match_)(const std::exception_ptr&) noexcept = nullptr;
};

/// Decides from the exception itself whether to retry. Built from a callable
/// taking one exception type: `[](const http_error& e) { return e.status >= 500; }`
/// (an exception of another type is then not retried by it), or taking the
/// `const std::exception_ptr&`.
class exception_predicate {
 public:
  /// Unset.
  exception_predicate() = default;

  template <class F>
    requires(!std::is_same_v<std::decay_t<F>, exception_predicate>)
  exception_predicate(F f) {  // NOLINT: implicit, so a lambda reads well in designated initializers
    using Fn = std::decay_t<F>;
    if constexpr (std::is_invocable_r_v<bool, Fn&, const std::exception_ptr&>) {
      fn_ = std::move(f);
    } else {
      static_assert(detail::has_callable_arg<Fn>,
                    "retry_if: pass a callable taking one exception type, e.g. [](const http_error& e) { ... } "
                    "(a generic lambda cannot say which exceptions it handles)");
      using E = std::remove_cvref_t<typename detail::callable_arg<Fn>::type>;
      fn_ = [f = std::move(f)](const std::exception_ptr& e) mutable -> bool {
        try {
          std::rethrow_exception(e);
        } catch (const E& ex) {
          return static_cast<bool>(f(ex));
        } catch (...) {
          return false;
        }
      };
    }
  }

  /// True when a predicate was given.
  explicit operator bool() const noexcept { return static_cast<bool>(fn_); }
  /// Asks the predicate (precondition: set).
  bool operator()(const std::exception_ptr& e) const { return fn_(e); }

 private:
  std::function<bool(const std::exception_ptr&)> fn_;
};

/// Decides from a successful result whether to retry anyway ("the body says
/// 503"). Built from a callable taking the call's result type:
/// `[](const http_response& r) { return r.status == 503; }`. Type-erased so
/// retry_options stays one plain struct; a call whose result type differs
/// fails with std::invalid_argument naming both types, without being run.
class result_predicate {
 public:
  /// Unset.
  result_predicate() = default;

  template <class F>
    requires(!std::is_same_v<std::decay_t<F>, result_predicate>)
  result_predicate(F f)  // NOLINT: implicit, so a lambda reads well in designated initializers
      : type_{&typeid(arg_t<std::decay_t<F>>)}, type_name_{&detail::type_name<arg_t<std::decay_t<F>>>} {
    using A = arg_t<std::decay_t<F>>;
    fn_ = [f = std::move(f)](const void* value) mutable -> bool { return static_cast<bool>(f(*static_cast<const A*>(value))); };
  }

  /// True when a predicate was given.
  explicit operator bool() const noexcept { return static_cast<bool>(fn_); }
  /// True when the predicate takes a T.
  template <class T>
  bool accepts() const noexcept {
    if constexpr (std::is_void_v<T>)
      return false;
    else
      return type_ != nullptr && *type_ == typeid(T);
  }
  /// Asks the predicate (precondition: accepts<T>()).
  template <class T>
  bool operator()(const T& value) const {
    return fn_(static_cast<const void*>(std::addressof(value)));
  }
  /// The type the predicate takes, readable.
  std::string type_name() const { return type_name_ ? type_name_() : std::string{"nothing"}; }

 private:
  template <class Fn>
  static auto arg_type() {
    static_assert(detail::has_callable_arg<Fn>,
                  "retry_on_result: pass a callable taking the call's result type, e.g. [](const http_response& r) { ... } "
                  "(a generic lambda cannot be type-erased)");
    if constexpr (detail::has_callable_arg<Fn>)
      return std::type_identity<std::remove_cvref_t<typename detail::callable_arg<Fn>::type>>{};
    else
      return std::type_identity<int>{};
  }
  template <class Fn>
  using arg_t = typename decltype(arg_type<Fn>())::type;

  const std::type_info* type_ = nullptr;
  std::string (*type_name_)() = nullptr;
  std::function<bool(const void*)> fn_;
};

/// A set of rejection codes (errc), for retry_options::retry_rejections.
/// `{}` is the empty set; errc_set::all() every code.
class errc_set {
 public:
  /// The empty set.
  constexpr errc_set() noexcept = default;
  /// The listed codes.
  constexpr errc_set(std::initializer_list<errc> codes) noexcept {
    for (errc c : codes) bits_ |= bit(c);
  }
  /// Every code.
  static constexpr errc_set all() noexcept {
    errc_set s;
    s.bits_ = ~std::uint32_t{0};
    return s;
  }
  /// True when c is in the set.
  constexpr bool contains(errc c) const noexcept { return (bits_ & bit(c)) != 0; }

 private:
  static constexpr std::uint32_t bit(errc c) noexcept { return std::uint32_t{1} << static_cast<unsigned>(c); }
  std::uint32_t bits_ = 0;
};

/// The failed attempt as on_retry sees it: an exception, a rejection, or a
/// result that retry_on_result asked to retry. Views into the attempt's
/// outcome, valid during the callback.
class retry_failure {
 public:
  template <class T>
  explicit retry_failure(const outcome<T>& o) noexcept
      : exception_{o.has_exception() ? &o.exception() : nullptr}, rejection_{o.has_rejection() ? &o.rejection() : nullptr} {}

  /// The callable threw.
  bool has_exception() const noexcept { return exception_ != nullptr; }
  /// What it threw (precondition: has_exception()).
  const std::exception_ptr& exception() const noexcept { return *exception_; }
  /// An inner policy rejected the attempt.
  bool has_rejection() const noexcept { return rejection_ != nullptr; }
  /// The rejection (precondition: has_rejection()).
  const resilience::rejection& rejection() const noexcept { return *rejection_; }
  /// The attempt returned a value that retry_on_result asked to retry.
  bool is_result() const noexcept { return exception_ == nullptr && rejection_ == nullptr; }
  /// A readable description of the failure.
  std::string what() const {
    if (exception_) return describe(*exception_);
    if (rejection_) return outcome<void>{*rejection_}.what();
    return "retry_on_result rejected the result";
  }

 private:
  const std::exception_ptr* exception_;
  const resilience::rejection* rejection_;
};

/// Settings of a retry policy; every default is the seed's. Validated when
/// the retry is built.
struct retry_options {
  /// Retries after the first attempt (0 = try once); default 3, must be >= 0.
  int max_retries = 3;
  /// The first delay; default 1 s, must be >= 0.
  duration base_delay = std::chrono::seconds{1};
  /// How delays grow; default exponential (1, 2, 4, 8 s).
  backoff_strategy strategy = backoff_strategy::exponential;
  /// Growth factor of exponential backoff; default 2, must be finite and >= 1.
  double multiplier = 2.0;
  /// Cap on a computed delay (not on a server's Retry-After); default 5 min, must be >= base_delay.
  duration max_delay = std::chrono::minutes{5};
  /// Randomization of the delay; default none (the production preset turns it on).
  jitter_mode jitter = jitter_mode::none;
  /// Where jitter's randomness comes from; default a per-thread generator.
  random_source random{};

  /// Exceptions that retry. With neither retry_on nor retry_if set, every
  /// exception retries; otherwise one retries when it is listed here or
  /// retry_if accepts it.
  exception_filter retry_on{};
  /// Exceptions that never retry (fail fast); wins over retry_on and retry_if.
  exception_filter never_retry{};
  /// A predicate on the exception; see retry_on.
  exception_predicate retry_if{};
  /// A predicate on a successful result: true means "retry anyway". When
  /// attempts run out, that last result is returned as it is. Default: unset.
  result_predicate retry_on_result{};
  /// Rejection codes of inner policies that retry; default all (an open
  /// circuit's or a rate limit's retry_after is waited out first).
  errc_set retry_rejections = errc_set::all();

  /// Called before each wait: (the attempt that failed, 1-based; the wait; the failure).
  /// An exception from it (or from a predicate) ends the call with that exception.
  std::function<void(int attempt, duration delay, const retry_failure& failure)> on_retry{};
};

/// Retries a failed call after a backoff delay. A value: copies share only
/// their event hub.
class retry {
 public:
  /// Per-call progress of a retry loop.
  struct state {
    int attempt = 1;                             ///< the attempt that runs next / just ended (1-based)
    duration previous_delay = duration::zero();  ///< the backoff delay before `attempt`
  };

  /// Validates the options; throws std::invalid_argument naming the bad field.
  explicit retry(retry_options options = {})
      : options_{std::move(options)}, backoff_{checked_backoff(options_)}, events_{std::make_shared<event_hub>()} {}

  /// After an attempt ended with `result`: the delay before the next attempt,
  /// or nullopt to stop and hand `result` to the caller as it is. Applies the
  /// classification, backoff and jitter, Retry-After, the deadline and stop
  /// token of ctx, and fires on_retry and the events. Increments s.attempt
  /// when it returns a delay. Throws std::invalid_argument when
  /// retry_on_result takes another type than T, and what on_retry or a
  /// predicate throws.
  template <class T>
  std::optional<duration> next_delay(const call_context& ctx, const outcome<T>& result, state& s) const {
    if (result.has_value()) {
      if (!options_.retry_on_result) return std::nullopt;
      check_result_type<T>();
      if constexpr (!std::is_void_v<T>) {
        if (!options_.retry_on_result(*result)) return std::nullopt;
      }
    } else if (out_of_attempts(ctx, s) ||
               (result.has_exception() ? !retryable(result.exception()) : !options_.retry_rejections.contains(result.rejection().code))) {
      // Attempts are checked first: classifying an exception costs a rethrow per filter.
      give_up(ctx, retry_failure{result}, s.attempt);
      return std::nullopt;
    }
    return schedule(ctx, retry_failure{result}, result.retry_after(), s);
  }

  /// Runs next(ctx) until it succeeds, a failure is not retryable, attempts
  /// run out, the deadline is too near, or ctx.stop is requested; returns the
  /// last outcome unchanged. Sets ctx.attempt before each try. Never
  /// throws: what on_retry, a predicate or the clock throws becomes the
  /// call's outcome.
  template <class Next>
  auto execute(call_context& ctx, Next&& next) const {
    using result_t = std::remove_cvref_t<std::invoke_result_t<Next&, call_context&>>;
    if (options_.retry_on_result) [[unlikely]]
      return execute_checking_results<result_t>(ctx, next);
    // The happy path stays this small (one outcome, returned in place) so
    // that compilers inline it; everything a failure needs is out of line.
    ctx.attempt = 1;
    result_t result = next(ctx);
    if (!result.has_value()) [[unlikely]]
      keep_trying(ctx, next, result);
    return result;
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
    return resilience::backoff{backoff_options{o.strategy, o.base_delay, o.multiplier, o.max_delay, o.jitter, o.random}, "retry"};
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
        if (!ctx.clock().sleep_until(std::min(detail::saturating_add(ctx.now(), *delay), ctx.deadline), ctx.stop)) {
          give_up(ctx, retry_failure{result}, s.attempt - 1);
          return;
        }
        ctx.attempt = s.attempt;
        replace(result, next(ctx));
      }
    } catch (...) {
      replace(result, Result{std::current_exception()});
    }
  }

  template <class Result>
  static void replace(Result& slot, Result&& fresh) {
    if constexpr (std::is_move_assignable_v<Result>) {
      slot = std::move(fresh);
    } else {  // a value type without assignment (const members): rebuild in place
      static_assert(std::is_nothrow_move_constructible_v<Result>, "retry: the result type must be move-assignable or nothrow-movable");
      std::destroy_at(&slot);
      std::construct_at(&slot, std::move(fresh));
    }
  }

  template <class T>
  void check_result_type() const {
    if (!options_.retry_on_result.template accepts<T>())
      throw std::invalid_argument{"retry: retry_on_result takes '" + options_.retry_on_result.type_name() +
                                  "' but the call returns '" + detail::type_name<T>() + "'"};
  }

  bool out_of_attempts(const call_context& ctx, const state& s) const noexcept {
    return s.attempt > options_.max_retries || ctx.stop.stop_requested();
  }

  bool retryable(const std::exception_ptr& e) const {
    if (options_.never_retry.matches(e)) return false;
    if (!options_.retry_on && !options_.retry_if) return true;
    return options_.retry_on.matches(e) || (options_.retry_if && options_.retry_if(e));
  }

  std::optional<duration> schedule(const call_context& ctx, const retry_failure& failure, std::optional<duration> hint,
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
    detail::emit(events_.get(), [&] { return retry_attempted{ctx.operation, s.attempt, delay, failure.what()}; });
    s.previous_delay = computed;
    ++s.attempt;
    return delay;
  }

  void give_up(const call_context& ctx, const retry_failure& failure, int attempts) const noexcept {
    detail::emit(events_.get(), [&] { return retries_exhausted{ctx.operation, attempts, failure.what()}; });
  }

  retry_options options_;
  resilience::backoff backoff_;
  std::shared_ptr<event_hub> events_;
};

/// The largest wait parse_retry_after accepts: 24 hours. A longer one is
/// taken for a server bug (or a date meant for another clock), not advice.
inline constexpr duration max_retry_after = std::chrono::hours{24};

/// Parses an HTTP Retry-After value (RFC 9110 §10.2.3): delta-seconds
/// ("120") or an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", with the
/// weekday matching the date), relative to `now`. Returns nothing for
/// anything malformed, for a date in the past, or for a wait longer than
/// max_retry_after. Never throws.
inline std::optional<duration> parse_retry_after(std::string_view text, std::chrono::system_clock::time_point now) noexcept {
  using namespace std::chrono;
  auto is_ows = [](char c) { return c == ' ' || c == '\t'; };
  while (!text.empty() && is_ows(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_ows(text.back())) text.remove_suffix(1);
  if (text.empty()) return std::nullopt;
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  auto number = [&](std::size_t pos, std::size_t len) -> int {  // -1 unless len digits
    int v = 0;
    for (std::size_t i = pos; i < pos + len; ++i) {
      if (!is_digit(text[i])) return -1;
      v = v * 10 + (text[i] - '0');
    }
    return v;
  };

  if (is_digit(text.front())) {
    std::int64_t secs = 0;
    for (char c : text) {
      if (!is_digit(c)) return std::nullopt;
      secs = secs * 10 + (c - '0');
      if (seconds{secs} > max_retry_after) return std::nullopt;  // stops before any overflow
    }
    return seconds{secs};
  }

  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT", fixed width, case-sensitive.
  constexpr std::string_view days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  constexpr std::string_view months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  if (text.size() != 29 || text.substr(3, 2) != ", " || text[7] != ' ' || text[11] != ' ' || text[16] != ' ' || text[19] != ':' ||
      text[22] != ':' || text.substr(25) != " GMT")
    return std::nullopt;
  int weekday = -1;
  for (int i = 0; i < 7; ++i)
    if (text.substr(0, 3) == days[i]) weekday = i;
  int month = -1;
  for (int i = 0; i < 12; ++i)
    if (text.substr(8, 3) == months[i]) month = i + 1;
  const int day = number(5, 2), year = number(12, 4), hour = number(17, 2), minute = number(20, 2), second = number(23, 2);
  if (weekday < 0 || month < 0 || day < 0 || year < 0 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 ||
      second > 60)
    return std::nullopt;
  const year_month_day date{std::chrono::year{year}, std::chrono::month{static_cast<unsigned>(month)},
                            std::chrono::day{static_cast<unsigned>(day)}};
  if (!date.ok()) return std::nullopt;
  const sys_days midnight{date};
  if (std::chrono::weekday{midnight}.c_encoding() != static_cast<unsigned>(weekday)) return std::nullopt;
  const sys_seconds when = midnight + hours{hour} + minutes{minute} + seconds{second};
  // Compare in whole seconds first: a year-9999 date in nanoseconds would overflow.
  const auto now_s = floor<seconds>(now);
  if (when < now_s || when - now_s > ceil<seconds>(max_retry_after) + seconds{1}) return std::nullopt;
  const duration wait = duration_cast<duration>(when - now_s) - duration_cast<duration>(now - now_s);
  if (wait < duration::zero() || wait > max_retry_after) return std::nullopt;
  return wait;
}

}  // namespace v1
}  // namespace resilience
