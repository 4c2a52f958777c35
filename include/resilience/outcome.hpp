// resilience/outcome.hpp: what a call produced — a value, the exception the
// callable threw, or a policy rejection — without throwing.
//
//   resilience::outcome<double> r = fetch.try_call("electricity");
//   if (r) use(*r);
//   else if (r.has_rejection() && r.rejection().is(resilience::circuit_open_kind)) wait(r.rejection().retry_after);
//   else log(r.what());
//   double v = std::move(r).value();  // or rethrow the same exception / throw the rejection's type
#pragma once

#include <cstdint>
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

struct rejection;

/// What kind of refusal a rejection is, in the spirit of std::error_category:
/// one static instance per kind, compared by address. A policy defines its
/// own kind next to its code (timeout_kind in timeout.hpp, ...), and so can a
/// policy written outside the library:
///
///   struct kill_switch_kind_t final : resilience::rejection_kind {
///     constexpr kill_switch_kind_t() : rejection_kind{"kill_switch"} {}
///     std::string message(const resilience::rejection& r) const override { return "kill switch '" +
///     std::string{r.source} + "' is off"; }
///   };
///   inline constexpr kill_switch_kind_t kill_switch_kind{};
class rejection_kind {
 public:
  rejection_kind(const rejection_kind&) = delete;
  rejection_kind& operator=(const rejection_kind&) = delete;

  /// A short lowercase name for logs and metrics ("circuit_open").
  constexpr std::string_view name() const noexcept { return name_; }
  /// True when the refusal says the dependency itself failed (a timeout), so
  /// a circuit breaker counts it; other refusals say nothing about it.
  constexpr bool dependency_failure() const noexcept { return dependency_failure_; }
  /// The human-readable text of r (its exception's what()).
  virtual std::string message(const rejection& r) const = 0;
  /// Throws r as this kind's exception type; by default a rejected_error
  /// carrying this kind.
  [[noreturn]] virtual void raise(const rejection& r) const;

  friend constexpr bool operator==(const rejection_kind& a, const rejection_kind& b) noexcept { return &a == &b; }

 protected:
  /// `name` must outlive the kind (a string literal).
  constexpr explicit rejection_kind(std::string_view name, bool dependency_failure = false) noexcept
      : name_{name}, dependency_failure_{dependency_failure} {}
  ~rejection_kind() = default;

 private:
  std::string_view name_;
  bool dependency_failure_;
};

/// The caller's stop_token fired before the call could finish (a kind of the
/// pipeline itself, not of one policy).
class cancelled_kind_t final : public rejection_kind {
 public:
  constexpr cancelled_kind_t() noexcept : rejection_kind{"cancelled"} {}
  std::string message(const rejection& r) const override;
  [[noreturn]] void raise(const rejection& r) const override;
};
/// The kind of a cancelled call.
inline constexpr cancelled_kind_t cancelled_kind{};

/// A policy's refusal, as a value: no allocation, no throw, trivially
/// copyable. The string views point at the rejecting policy's own name
/// (alive as long as the policy) or at the call's context (alive as long as
/// the caller's strings). The payload fields mean what the kind says.
struct rejection {
  const rejection_kind* kind = &cancelled_kind;  ///< what kind of rejection (never null)
  duration retry_after = duration::zero();       ///< when a new attempt may succeed; zero when unknown
  std::string_view source{};                     ///< name of the rejecting policy instance (breaker name, limiter key)
  duration value = duration::zero();             ///< kind-specific duration (timeout: the limit that passed)
  std::string_view detail{};                     ///< kind-specific text (rate limit: the tenant, if any)
  std::uint32_t code = 0;                        ///< kind-specific code (degraded: the tiers)

  /// True when this rejection is of kind k: `r.is(resilience::timeout_kind)`.
  constexpr bool is(const rejection_kind& k) const noexcept { return kind == &k; }
};

static_assert(std::is_trivially_copyable_v<rejection>, "a rejection travels by value, without allocation");

/// Throws r as its kind's exception type (circuit_open_error for
/// circuit_open_kind, and so on).
[[noreturn]] inline void throw_rejection(const rejection& r) {
  r.kind->raise(r);
  // A user's raise() that returned after all: throw the base.
  throw rejected_error{*r.kind, std::string{r.source}, r.retry_after, r.kind->message(r)};
}

inline void rejection_kind::raise(const rejection& r) const {
  throw rejected_error{*this, std::string{r.source}, r.retry_after, message(r)};
}

/// The call was cancelled through its stop_token.
class cancelled_error : public rejected_error {
 public:
  explicit cancelled_error(std::string source = {})
      : rejected_error{cancelled_kind, source, duration::zero(), detail::named("call cancelled", source)} {}
};

inline std::string cancelled_kind_t::message(const rejection& r) const {
  return detail::named("call cancelled", r.source);
}
inline void cancelled_kind_t::raise(const rejection& r) const { throw cancelled_error{std::string{r.source}}; }

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
  requires(!std::is_void_v<T> && std::is_constructible_v<stored, U&&> &&
           !std::is_same_v<std::remove_cvref_t<U>, outcome> &&
           !std::is_same_v<std::remove_cvref_t<U>, std::exception_ptr> &&
           !std::is_same_v<std::remove_cvref_t<U>, rejection_type>) outcome(U&& value)
      : v_{std::in_place_index<0>, std::forward<U>(value)} {}
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
  requires(!std::is_void_v<T>) T value_or(U&& fallback)
  const& { return has_value() ? std::get<0>(v_) : static_cast<T>(std::forward<U>(fallback)); }
  template <class U>
  requires(!std::is_void_v<T>) T value_or(U&& fallback) && {
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
    if (has_rejection()) return rejection().kind->message(rejection());
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
    if constexpr (std::is_void_v<T>) return;
    else if constexpr (std::is_lvalue_reference_v<Self>) return *std::get_if<0>(&self.v_);
    else return std::move(*std::get_if<0>(&self.v_));
  }

  std::variant<stored, std::exception_ptr, rejection_type> v_;
};

}  // namespace v1
}  // namespace resilience
