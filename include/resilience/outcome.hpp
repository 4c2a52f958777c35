// resilience/outcome.hpp: what a call produced — a value, the exception the
// callable threw, or a policy rejection — without throwing.
//
//   resilience::outcome<double> r = fetch.try_call("electricity");
//   if (r) use(*r);
//   else if (r.has_rejection() && r.rejection().code == resilience::errc::circuit_open) wait(r.rejection().retry_after);
//   else log(r.what());
//   double v = std::move(r).value();  // or rethrow the same exception / throw the rejection's type
#pragma once

#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "clock.hpp"
#include "errors.hpp"

namespace resilience {
inline namespace v1 {

/// A policy's refusal, as a value: no allocation, no throw. The string views
/// point at the rejecting policy's own name (alive as long as the policy) or
/// at the call's context (alive as long as the caller's strings).
struct rejection {
  errc code = errc::cancelled;            ///< what kind of rejection
  duration retry_after = duration::zero();  ///< when a new attempt may succeed; zero when unknown
  std::string_view source{};              ///< name of the rejecting policy instance (breaker name, limiter key)
  duration limit = duration::zero();      ///< for errc::timeout: the limit that passed
  std::string_view tenant{};              ///< for errc::rate_limited: the tenant, if any
  tier current = tier::full;              ///< for errc::degraded: the tier at the time
  tier required = tier::full;             ///< for errc::degraded: the tier the call needed
};

/// Throws the exception type that matches r.code (circuit_open_error for
/// errc::circuit_open, and so on).
[[noreturn]] inline void throw_rejection(const rejection& r) {
  std::string source{r.source};
  switch (r.code) {
    case errc::timeout: throw timeout_error{r.limit, std::move(source)};
    case errc::circuit_open: throw circuit_open_error{std::move(source), r.retry_after};
    case errc::rate_limited: throw rate_limit_exceeded{std::move(source), r.retry_after, std::string{r.tenant}};
    case errc::bulkhead_full: throw bulkhead_full_error{std::move(source)};
    case errc::degraded: throw degraded_error{r.current, r.required, std::move(source)};
    case errc::cancelled: break;
  }
  throw cancelled_error{std::move(source)};
}

/// The text of a failure: e.what() for a std::exception, a fixed text otherwise.
inline std::string describe(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

/// The retry-after a user exception carries through retry_after_hint, if any.
inline std::optional<duration> retry_after_of(const std::exception_ptr& e) {
  if (!e) return std::nullopt;
  try {
    std::rethrow_exception(e);
  } catch (const retry_after_hint& h) {
    return h.retry_after();
  } catch (const rejected_error& r) {
    if (r.retry_after() > duration::zero()) return r.retry_after();
  } catch (...) {
  }
  return std::nullopt;
}

/// A value of T (nothing for T = void), a user exception, or a rejection.
template <class T>
class outcome {
  static_assert(!std::is_reference_v<T>, "outcome<T&> is not supported; return a pointer or a std::reference_wrapper");
  using stored = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

 public:
  using value_type = T;
  using rejection_type = resilience::rejection;

  /// Success; for outcome<void> this is the only way to say it.
  outcome() requires std::is_void_v<T> || std::is_default_constructible_v<T> : v_{std::in_place_index<0>} {}
  /// Success with a value.
  template <class U = stored>
    requires(!std::is_void_v<T> && std::is_constructible_v<stored, U &&> &&
             !std::is_same_v<std::remove_cvref_t<U>, outcome> && !std::is_same_v<std::remove_cvref_t<U>, std::exception_ptr> &&
             !std::is_same_v<std::remove_cvref_t<U>, rejection_type>)
  outcome(U&& value) : v_{std::in_place_index<0>, std::forward<U>(value)} {}
  /// Success, constructing the value in place.
  template <class... Args>
  explicit outcome(std::in_place_t, Args&&... args) : v_{std::in_place_index<0>, std::forward<Args>(args)...} {}
  /// A failure the callable threw (must not be null).
  outcome(std::exception_ptr e) noexcept : v_{std::in_place_index<1>, std::move(e)} {}
  /// A policy rejection.
  outcome(const rejection_type& r) noexcept : v_{std::in_place_index<2>, r} {}

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }
  bool has_exception() const noexcept { return v_.index() == 1; }
  bool has_rejection() const noexcept { return v_.index() == 2; }
  /// The exception (precondition: has_exception()).
  const std::exception_ptr& exception() const noexcept { return *std::get_if<1>(&v_); }
  /// The rejection (precondition: has_rejection()).
  const rejection_type& rejection() const noexcept { return *std::get_if<2>(&v_); }

  /// The value; rethrows the user's exception (the same object) or throws the
  /// rejection as its exception type.
  decltype(auto) value() & { return get(*this); }
  decltype(auto) value() const& { return get(*this); }
  decltype(auto) value() && { return get(std::move(*this)); }

  /// The value, or `fallback` on any failure.
  template <class U>
    requires(!std::is_void_v<T>)
  T value_or(U&& fallback) const& {
    return has_value() ? std::get<0>(v_) : static_cast<T>(std::forward<U>(fallback));
  }
  template <class U>
    requires(!std::is_void_v<T>)
  T value_or(U&& fallback) && {
    return has_value() ? std::move(std::get<0>(v_)) : static_cast<T>(std::forward<U>(fallback));
  }

  stored& operator*() & noexcept requires(!std::is_void_v<T>) { return *std::get_if<0>(&v_); }
  const stored& operator*() const& noexcept requires(!std::is_void_v<T>) { return *std::get_if<0>(&v_); }
  stored&& operator*() && noexcept requires(!std::is_void_v<T>) { return std::move(*std::get_if<0>(&v_)); }
  stored* operator->() noexcept requires(!std::is_void_v<T>) { return std::get_if<0>(&v_); }
  const stored* operator->() const noexcept requires(!std::is_void_v<T>) { return std::get_if<0>(&v_); }

  /// Rethrows the failure, if any; does nothing on success.
  void throw_if_failed() const {
    if (has_exception()) std::rethrow_exception(exception());
    if (has_rejection()) throw_rejection(rejection());
  }

  /// The failure as an exception_ptr (a rejection becomes its exception
  /// type); null on success.
  std::exception_ptr to_exception_ptr() const {
    if (has_exception()) return exception();
    if (has_rejection()) {
      try {
        throw_rejection(rejection());
      } catch (...) {
        return std::current_exception();
      }
    }
    return nullptr;
  }

  /// A human-readable text of the failure ("" on success).
  std::string what() const {
    if (has_exception()) return describe(exception());
    if (has_rejection()) {
      try {
        throw_rejection(rejection());
      } catch (const std::exception& e) {
        return e.what();
      }
    }
    return {};
  }

  /// The wait a failure asks for: a rejection's retry_after, or a user
  /// exception's retry_after_hint.
  std::optional<duration> retry_after() const {
    if (has_rejection()) {
      if (rejection().retry_after > duration::zero()) return rejection().retry_after;
      return std::nullopt;
    }
    if (has_exception()) return retry_after_of(exception());
    return std::nullopt;
  }

 private:
  template <class Self>
  static decltype(auto) get(Self&& self) {
    if (self.v_.index() == 1) std::rethrow_exception(*std::get_if<1>(&self.v_));
    if (self.v_.index() == 2) throw_rejection(*std::get_if<2>(&self.v_));
    if constexpr (std::is_void_v<T>)
      return;
    else if constexpr (std::is_lvalue_reference_v<Self>)
      return *std::get_if<0>(&self.v_);
    else
      return std::move(*std::get_if<0>(&self.v_));
  }

  std::variant<stored, std::exception_ptr, rejection_type> v_;
};

}  // namespace v1
}  // namespace resilience
