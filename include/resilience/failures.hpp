// resilience/failures.hpp: which failures a policy handles, in one value.
// A `failure` views one failed call: the callable's exception, an inner
// policy's rejection, or a returned value counted as a failure. A `failures`
// value says which of them a policy handles; retry, the circuit breaker and
// fallback all take one as `handle` (the breaker also as `ignore`).
//
//   using resilience::failures;
//   resilience::retry r{{.handle = (failures::exceptions_if([](const http_error& e) { return e.status >= 500; }) |
//                                   failures::rejections({resilience::rate_limited_kind}))
//                                      .except<invalid_activity>()}};
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
#include <vector>

#if __has_include(<cxxabi.h>)
#include <cxxabi.h>
#endif

#include "errors.hpp"
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

}  // namespace detail

/// A set of rejection kinds (open: a policy's own kind goes in as well as
/// the library's), for failures::rejections:
/// `failures::rejections({resilience::timeout_kind, resilience::rate_limited_kind})`.
/// `{}` is the empty set; kind_set::all() every kind, present and future.
class kind_set {
 public:
  /// How many kinds a set can name.
  static constexpr std::size_t capacity = 8;

  /// The empty set.
  constexpr kind_set() noexcept = default;
  /// The listed kinds.
  template <class... Kinds>
  requires(sizeof...(Kinds) > 0 &&
           (std::is_convertible_v<const Kinds&, const rejection_kind&> &&
            ...)) constexpr kind_set(const Kinds&... kinds) noexcept  // NOLINT: implicit, reads well in designated
                                                                      // initializers
      : kinds_{&static_cast<const rejection_kind&>(kinds)...}, size_{sizeof...(Kinds)} {
    static_assert(sizeof...(Kinds) <= capacity, "kind_set: at most kind_set::capacity kinds");
  }
  /// Every kind.
  static constexpr kind_set all() noexcept {
    kind_set s;
    s.all_ = true;
    return s;
  }
  /// True when the set names no kind.
  constexpr bool empty() const noexcept { return !all_ && size_ == 0; }
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

/// One failure as a policy sees it: the callable's exception, an inner
/// policy's rejection, or a returned value that a `failures::results`
/// predicate counts as a failure. A view: valid while what it was built
/// from lives (during the callback that receives it).
class failure {
 public:
  /// The failure an outcome holds; a value, if it holds one (is_result()).
  template <class T>
  explicit failure(const outcome<T>& o) noexcept {
    if (o.has_exception()) {
      exception_ = &o.exception();
    } else if (o.has_rejection()) {
      rejection_ = &o.rejection();
    } else if constexpr (!std::is_void_v<T>) {
      value_ = std::addressof(*o);
      type_ = &typeid(T);
    }
  }
  /// An exception the callable threw.
  explicit failure(const std::exception_ptr* e) noexcept : exception_{e} {}
  /// An inner policy's rejection.
  explicit failure(const resilience::rejection* r) noexcept : rejection_{r} {}
  /// A returned value counted as a failure.
  template <class T>
  requires(!std::is_same_v<T, std::exception_ptr> &&
           !std::is_same_v<T, resilience::rejection>) explicit failure(const T* value) noexcept
      : value_{value}, type_{&typeid(T)} {}

  /// The callable threw.
  bool has_exception() const noexcept { return exception_ != nullptr; }
  /// What it threw (precondition: has_exception()).
  const std::exception_ptr& exception() const noexcept { return *exception_; }
  /// An inner policy rejected the call.
  bool has_rejection() const noexcept { return rejection_ != nullptr; }
  /// The rejection (precondition: has_rejection()).
  const resilience::rejection& rejection() const noexcept { return *rejection_; }
  /// The call returned a value counted as a failure.
  bool is_result() const noexcept { return exception_ == nullptr && rejection_ == nullptr; }
  /// That value, when it is a T (nullptr otherwise, or when this is not a result).
  template <class T>
  const T* result() const noexcept {
    return type_ != nullptr && *type_ == typeid(T) ? static_cast<const T*>(value_) : nullptr;
  }

  /// True when the failure is (or, for a rejection, would be thrown as) an
  /// E: catch rules, so a derived exception is its base too.
  template <class E>
  bool is() const {
    try {
      if (exception_) std::rethrow_exception(*exception_);
      if (rejection_) throw_rejection(*rejection_);
    } catch (const E&) {
      return true;
    } catch (...) {
    }
    return false;
  }

  /// A readable description.
  std::string what() const {
    if (exception_) return describe(*exception_);
    if (rejection_) return outcome<void>{*rejection_}.what();
    return "the result counts as a failure";
  }

 private:
  const std::exception_ptr* exception_ = nullptr;
  const resilience::rejection* rejection_ = nullptr;
  const void* value_ = nullptr;
  const std::type_info* type_ = nullptr;
};

namespace detail {

// What a failures rule can be asked about (a rule is skipped, unasked, for
// the other kinds of failure: a rejection costs no rethrow of an exception).
inline constexpr std::uint8_t on_exceptions = 1;
inline constexpr std::uint8_t on_rejections = 2;
inline constexpr std::uint8_t on_results = 4;

struct failure_rule {
  std::uint8_t on;
  std::function<bool(const failure&)> test;
};

struct result_type {
  const std::type_info* type;
  std::string (*name)();
};

struct failure_rules {
  std::vector<failure_rule> any_of;
  std::vector<result_type> result_types;  // what the results() predicates among any_of take
};

}  // namespace detail

/// Which failures a policy handles: a value built when the policy is
/// configured (building may allocate), cheap to copy, composed with `|` and
/// except(). Asking about an exception may rethrow it once per rule; a
/// policy asks only when a call failed, or when has_result_predicates().
///
///   failures::exceptions<http_error>() | failures::rejections({resilience::timeout_kind})
class failures {
 public:
  /// Nothing (the same as none()).
  failures() = default;

  /// Every exception and every rejection; no returned value.
  static failures any() {
    failures f;
    f.every_exception_ = true;
    f.kinds_ = kind_set::all();
    return f;
  }
  /// Nothing.
  static failures none() { return failures{}; }
  /// Every exception the callable threw (no rejection: those are values
  /// until they reach the caller).
  static failures exceptions() {
    failures f;
    f.every_exception_ = true;
    return f;
  }
  /// Failures that are, or would reach the caller as, one of E...: catch
  /// rules, so a derived exception matches its base, and
  /// exceptions<circuit_open_error>() matches an open breaker's rejection.
  template <class E, class... Es>
  static failures exceptions() {
    return rule(detail::on_exceptions | detail::on_rejections,
                [](const failure& f) { return f.template is<E>() || (f.template is<Es>() || ...); });
  }
  /// Failures the predicate accepts. It takes one exception type,
  /// `[](const http_error& e) { return e.status >= 500; }`, and sees what is
  /// (or would be thrown as) that type, nothing else; or it takes the
  /// `const std::exception_ptr&` and sees every exception the callable threw.
  template <class F>
  static failures exceptions_if(F pred) {
    using Fn = std::decay_t<F>;
    if constexpr (std::is_invocable_r_v<bool, Fn&, const std::exception_ptr&>) {
      return rule(detail::on_exceptions, [pred = std::move(pred)](const failure& f) mutable -> bool {
        return static_cast<bool>(pred(f.exception()));
      });
    } else {
      static_assert(
          detail::has_callable_arg<Fn>,
          "exception predicate: pass a callable taking one exception type, e.g. [](const http_error& e) { ... } "
          "(a generic lambda cannot say which exceptions it handles)");
      if constexpr (detail::has_callable_arg<Fn>) {
        using E = std::remove_cvref_t<typename detail::callable_arg<Fn>::type>;
        return rule(detail::on_exceptions | detail::on_rejections,
                    [pred = std::move(pred)](const failure& f) mutable -> bool {
                      try {
                        if (f.has_exception()) std::rethrow_exception(f.exception());
                        throw_rejection(f.rejection());
                      } catch (const E& ex) {
                        return static_cast<bool>(pred(ex));
                      } catch (...) {
                      }
                      return false;
                    });
      } else {
        return failures{};
      }
    }
  }
  /// Rejections of these kinds (open: a policy's own kind works); every
  /// kind by default.
  static failures rejections(kind_set kinds = kind_set::all()) {
    failures f;
    f.kinds_ = kinds;
    return f;
  }
  /// Returned values the predicate counts as failures. It takes the call's
  /// result type, `[](const http_response& r) { return r.status == 503; }`,
  /// and sees only calls returning that type.
  template <class F>
  static failures results(F pred) {
    using A = result_arg_t<std::decay_t<F>>;
    failures f = rule(detail::on_results, [pred = std::move(pred)](const failure& x) mutable -> bool {
      const A* v = x.template result<A>();
      return v != nullptr && static_cast<bool>(pred(*v));
    });
    std::const_pointer_cast<detail::failure_rules>(f.rules_)->result_types.push_back(
        {&typeid(A), &detail::type_name<A>});
    return f;
  }
  /// Exceptions and rejections the predicate accepts (returned values are
  /// seen by results() only).
  static failures when(std::function<bool(const failure&)> pred) {
    return rule(detail::on_exceptions | detail::on_rejections, std::move(pred));
  }

  /// What either handles.
  friend failures operator|(const failures& a, const failures& b) {
    if (a.except_ || b.except_) {  // keep each side's exceptions to itself
      failures f =
          rule(a.rule_mask() | b.rule_mask(), [a, b](const failure& x) { return a.matches(x) || b.matches(x); });
      auto& types = std::const_pointer_cast<detail::failure_rules>(f.rules_)->result_types;
      for (const failures* side : {&a, &b})
        if (side->rules_)
          types.insert(types.end(), side->rules_->result_types.begin(), side->rules_->result_types.end());
      return f;
    }
    failures f;
    f.every_exception_ = a.every_exception_ || b.every_exception_;
    f.kinds_ = a.kinds_ | b.kinds_;
    if (!a.rules_ || !b.rules_) {
      f.rules_ = a.rules_ ? a.rules_ : b.rules_;
    } else {
      auto rules = std::make_shared<detail::failure_rules>(*a.rules_);
      rules->any_of.insert(rules->any_of.end(), b.rules_->any_of.begin(), b.rules_->any_of.end());
      rules->result_types.insert(rules->result_types.end(), b.rules_->result_types.begin(),
                                 b.rules_->result_types.end());
      f.rules_ = std::move(rules);
    }
    f.mask_ = a.mask_ | b.mask_;
    return f;
  }

  /// The same, but never what `never` handles: that wins over everything here.
  failures except(const failures& never) const {
    failures f = *this;
    f.except_ = std::make_shared<const failures>(except_ ? *except_ | never : never);
    return f;
  }
  /// The same, but never failures that are (or would be thrown as) one of E...
  template <class E, class... Es>
  failures except() const {
    return except(exceptions<E, Es...>());
  }

  /// Whether f is handled. Throws what a predicate throws. Out of line:
  /// policies ask only off their happy path, which stays small.
  [[gnu::noinline]] bool matches(const failure& f) const {
    if (except_ && except_->matches(f)) return false;
    if (f.has_exception()) {
      if (every_exception_) return true;
      return (mask_ & detail::on_exceptions) != 0 && ask(f, detail::on_exceptions);
    }
    if (f.has_rejection()) {
      if (kinds_.contains(*f.rejection().kind)) return true;
      return (mask_ & detail::on_rejections) != 0 && ask(f, detail::on_rejections);
    }
    return (mask_ & detail::on_results) != 0 && ask(f, detail::on_results);
  }

  /// True when some returned values may count (a results() predicate is
  /// set): a policy looks at successful results only then.
  bool has_result_predicates() const noexcept { return (mask_ & detail::on_results) != 0; }
  /// True when a results() predicate takes T.
  template <class T>
  bool takes_result() const noexcept {
    if constexpr (std::is_void_v<T>) {
      return false;
    } else {
      if (rules_)
        for (const auto& t : rules_->result_types)
          if (*t.type == typeid(T)) return true;
      return false;
    }
  }
  /// The types the results() predicates take, readable ("nothing" for none).
  std::string result_type_names() const {
    std::string out;
    if (rules_)
      for (const auto& t : rules_->result_types) out += (out.empty() ? "" : "', '") + t.name();
    return out.empty() ? "nothing" : out;
  }
  /// True when every exception matches without asking anything (any() or
  /// exceptions(), nothing excepted): a policy can skip the rethrows.
  bool handles_every_exception() const noexcept { return every_exception_ && !except_; }
  /// True when no exception can match.
  bool handles_no_exception() const noexcept { return !every_exception_ && (mask_ & detail::on_exceptions) == 0; }
  /// True when nothing can match.
  bool empty() const noexcept { return !every_exception_ && kinds_.empty() && mask_ == 0; }

 private:
  template <class Fn>
  static auto result_arg() {
    static_assert(
        detail::has_callable_arg<Fn>,
        "result predicate: pass a callable taking the call's result type, e.g. [](const http_response& r) { ... } "
        "(a generic lambda cannot be type-erased)");
    if constexpr (detail::has_callable_arg<Fn>)
      return std::type_identity<std::remove_cvref_t<typename detail::callable_arg<Fn>::type>>{};
    else return std::type_identity<int>{};
  }
  template <class Fn>
  using result_arg_t = typename decltype(result_arg<Fn>())::type;

  static failures rule(std::uint8_t on, std::function<bool(const failure&)> test) {
    failures f;
    auto rules = std::make_shared<detail::failure_rules>();
    rules->any_of.push_back({on, std::move(test)});
    f.rules_ = std::move(rules);
    f.mask_ = on;
    return f;
  }

  // What a union must keep asking about when it wraps both sides in one rule.
  std::uint8_t rule_mask() const noexcept {
    return static_cast<std::uint8_t>(mask_ | (every_exception_ ? detail::on_exceptions : 0) |
                                     (kinds_.empty() ? 0 : detail::on_rejections));
  }

  bool ask(const failure& f, std::uint8_t on) const {
    for (const auto& r : rules_->any_of)
      if ((r.on & on) != 0 && r.test(f)) return true;
    return false;
  }

  bool every_exception_ = false;
  std::uint8_t mask_ = 0;  // which kinds of failure some rule asks about
  kind_set kinds_{};
  std::shared_ptr<const detail::failure_rules> rules_;
  std::shared_ptr<const failures> except_;
};

}  // namespace v1
}  // namespace resilience
