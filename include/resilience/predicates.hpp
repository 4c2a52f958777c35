// resilience/predicates.hpp: how policies are told which failures they
// handle: exception type lists, predicates on the exception, predicates on a
// returned value, and sets of rejection codes. Retry, the circuit breaker and
// fallback all take these.
//
//   resilience::retry r{{.never_retry = resilience::exceptions<invalid_activity>{},
//                        .retry_if = [](const http_error& e) { return e.status >= 500; },
//                        .retry_on_result = [](const http_response& r) { return r.status == 503; }}};
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>

#if __has_include(<cxxabi.h>)
#include <cxxabi.h>
#endif

#include "errors.hpp"

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

  /// Matches an exception of any of the types E (or derived from them).
  template <class... E>
  exception_predicate(exceptions<E...>) : fn_{[](const std::exception_ptr& e) { return detail::exception_is_any<E...>(e); }} {}

  template <class F>
    requires(!std::is_same_v<std::decay_t<F>, exception_predicate>)
  exception_predicate(F f) {  // NOLINT: implicit, so a lambda reads well in designated initializers
    using Fn = std::decay_t<F>;
    if constexpr (std::is_invocable_r_v<bool, Fn&, const std::exception_ptr&>) {
      fn_ = std::move(f);
    } else {
      static_assert(detail::has_callable_arg<Fn>,
                    "exception predicate: pass a callable taking one exception type, e.g. [](const http_error& e) { ... } "
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
                  "result predicate: pass a callable taking the call's result type, e.g. [](const http_response& r) { ... } "
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

/// A set of rejection kinds (open: a policy's own kind goes in as well as
/// the library's), for retry_options::retry_rejections and fallback triggers:
/// `.retry_rejections = {resilience::timeout_kind, resilience::rate_limited_kind}`.
/// `{}` is the empty set; kind_set::all() every kind, present and future.
class kind_set {
 public:
  /// How many kinds a set can name.
  static constexpr std::size_t capacity = 8;

  /// The empty set.
  constexpr kind_set() noexcept = default;
  /// The listed kinds.
  template <class... Kinds>
    requires(sizeof...(Kinds) > 0 && (std::is_convertible_v<const Kinds&, const rejection_kind&> && ...))
  constexpr kind_set(const Kinds&... kinds) noexcept  // NOLINT: implicit, reads well in designated initializers
      : kinds_{&static_cast<const rejection_kind&>(kinds)...}, size_{sizeof...(Kinds)} {
    static_assert(sizeof...(Kinds) <= capacity, "kind_set: at most kind_set::capacity kinds");
  }
  /// Every kind.
  static constexpr kind_set all() noexcept {
    kind_set s;
    s.all_ = true;
    return s;
  }
  /// True when k is in the set.
  constexpr bool contains(const rejection_kind& k) const noexcept {
    if (all_) return true;
    for (std::size_t i = 0; i < size_; ++i)
      if (kinds_[i] == &k) return true;
    return false;
  }
  /// The kinds of either set; throws std::length_error past capacity.
  friend constexpr kind_set operator|(kind_set a, const kind_set& b) {
    if (a.all_ || b.all_) return all();
    for (std::size_t i = 0; i < b.size_; ++i) {
      if (a.contains(*b.kinds_[i])) continue;
      if (a.size_ == capacity) throw std::length_error{"kind_set: at most 8 kinds"};
      a.kinds_[a.size_++] = b.kinds_[i];
    }
    return a;
  }

 private:
  const rejection_kind* kinds_[capacity]{};
  std::size_t size_ = 0;
  bool all_ = false;
};

}  // namespace v1
}  // namespace resilience
