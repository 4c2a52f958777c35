// resilience/fallback.hpp: replace a failed call's outcome with something useful.
//
// Strategies: cached (the last good result for the same arguments, from a
// result_cache), default_value, fallback_to (another callable, which may see
// the failure and the arguments), none (the result becomes std::optional<T>,
// empty on failure), raise (keep the failure; ends a chain), and chain (try
// several in order). Which failures it replaces: its `handle` (failures.hpp),
// every exception and rejection by default.
//
//   resilience::result_cache<std::string, double> factors{{.ttl = 10min}};
//   resilience::resilient lookup{fetch_factor,
//       resilience::fallback{resilience::chain{resilience::cached{factors},
//                                              resilience::fallback_to{read_factor_from_db},
//                                              resilience::default_value{0.0}}},
//       resilience::retry{}};
#pragma once

#include <concepts>
#include <cstdint>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "cache.hpp"
#include "context.hpp"
#include "events.hpp"
#include "failures.hpp"
#include "fallback_event.hpp"
#include "outcome.hpp"
#include "policy.hpp"

namespace resilience {
inline namespace v1 {

/// What a fallback reports when it replaces a failure.
struct fallback_info {
  std::string_view operation;     ///< the call's operation name, if any
  std::string_view strategy;      ///< the strategy that produced the result ("cached", "default"...)
  const failure& cause;           ///< what it replaced
  std::optional<duration> age{};  ///< for "cached": the entry's age
  bool stale = false;             ///< for "cached": older than the cache's ttl
};

/// Settings of a fallback policy.
struct fallback_options {
  /// Which failures it replaces; default: every exception and rejection. A
  /// results() predicate makes returned values of its type failures too.
  failures handle = failures::any();
  /// Called each time it replaces a failure (on the calling thread), in
  /// addition to the fallback_activated event. An exception from it is ignored.
  std::function<void(const fallback_info&)> on_activated{};
};

namespace detail {

// A strategy's optional result for T (void results recover to "nothing").
template <class T>
using recovered_t = std::optional<std::conditional_t<std::is_void_v<T>, std::monostate, T>>;

template <class R>
struct optional_value {
  using type = R;
};
template <class T>
struct optional_value<std::optional<T>> {
  using type = T;
};

}  // namespace detail

/// Strategy: a fixed value.
template <class V>
class default_value {
 public:
  /// Returns v (converted to the call's result type) on failure.
  explicit default_value(V v) : v_{std::move(v)} {}
  static constexpr std::string_view name = "default";

  template <class T, class Call>
  detail::recovered_t<T> recover(call_context&, const failure&, const Call&, fallback_info&) const {
    return static_cast<T>(v_);
  }

 private:
  V v_;
};

/// Strategy: call another callable. It may take (const failure&, args...),
/// (args...), (const failure&) or nothing, where args are the call's own
/// arguments. If it throws, the strategy did not recover (a chain goes on).
template <class F>
class fallback_to {
 public:
  explicit fallback_to(F f) : f_{std::move(f)} {}
  static constexpr std::string_view name = "function";

  template <class T, class Call>
  detail::recovered_t<T> recover(call_context&, const failure& why, const Call& call, fallback_info&) const {
    try {
      return std::apply([&](auto&... args) -> detail::recovered_t<T> { return invoke<T>(why, args...); },
                        call.arguments());
    } catch (...) {
      return std::nullopt;
    }
  }

 private:
  template <class T, class R>
  static detail::recovered_t<T> wrap(R&& run) {
    if constexpr (std::is_void_v<T>) {
      run();
      return std::monostate{};
    } else {
      return static_cast<T>(run());
    }
  }

  template <class T, class... A>
  detail::recovered_t<T> invoke(const failure& why, A&... args) const {
    if constexpr (std::is_invocable_v<const F&, const failure&, A&...>)
      return wrap<T>([&]() -> decltype(auto) { return std::invoke(f_, why, args...); });
    else if constexpr (std::is_invocable_v<const F&, A&...>)
      return wrap<T>([&]() -> decltype(auto) { return std::invoke(f_, args...); });
    else if constexpr (std::is_invocable_v<const F&, const failure&>)
      return wrap<T>([&]() -> decltype(auto) { return std::invoke(f_, why); });
    else {
      static_assert(std::is_invocable_v<const F&>,
                    "fallback_to: the callable must take (failure, args...), (args...), (failure) or ()");
      return wrap<T>([&]() -> decltype(auto) { return std::invoke(f_); });
    }
  }

  F f_;
};

/// Strategy: keep the failure (the default's opposite; ends a chain so that
/// it rethrows what the call threw when nothing else recovered).
struct raise_t {
  static constexpr std::string_view name = "raise";
  template <class T, class Call>
  detail::recovered_t<T> recover(call_context&, const failure&, const Call&, fallback_info&) const {
    return std::nullopt;
  }
};
/// The raise strategy.
inline constexpr raise_t raise{};

/// Strategy: the call's result becomes std::optional<T>, empty on failure.
/// Stands alone (not in a chain).
struct none_t {
  static constexpr std::string_view name = "none";
};
/// The none strategy.
inline constexpr none_t none{};

/// Strategy: the last good result for the same arguments, from a
/// result_cache (stale entries too, up to the cache's max_age). Every good
/// result of the call is written to the cache. The key is key_fn(args...),
/// or Key{args...}, or Key{std::tuple{args...}}.
template <class Cache, class KeyFn = void>
class cached {
 public:
  using key_type = typename Cache::key_type;

  /// Keys from the arguments themselves.
  explicit cached(Cache cache) requires std::is_void_v<KeyFn> : cache_{std::move(cache)} {}
  /// Keys from key_fn(args...).
  template <class K>
  cached(Cache cache, K key_fn) : cache_{std::move(cache)}, key_fn_{std::move(key_fn)} {}
  static constexpr std::string_view name = "cached";

  template <class T, class Call>
  detail::recovered_t<T> recover(call_context&, const failure&, const Call& call, fallback_info& info) const {
    auto hit = cache_.get_stale(key_of(call));
    if (!hit) return std::nullopt;
    info.age = hit->age;
    info.stale = hit->stale;
    return static_cast<T>(std::move(hit->value));
  }

  template <class T, class Call>
  void record(const T& value, const Call& call) const {
    cache_.put(key_of(call), value);
  }

  /// The cache this strategy reads and writes.
  const Cache& cache() const noexcept { return cache_; }

 private:
  template <class Call>
  key_type key_of(const Call& call) const {
    return std::apply(
        [&](const auto&... args) -> key_type {
          if constexpr (!std::is_void_v<KeyFn>) return key_fn_(args...);
          else if constexpr (std::is_constructible_v<key_type, decltype(args)...>) return key_type(args...);
          else return key_type{std::tuple{args...}};
        },
        call.arguments());
  }

  struct empty {};
  Cache cache_;
  [[no_unique_address]] std::conditional_t<std::is_void_v<KeyFn>, empty, KeyFn> key_fn_{};
};

template <class Cache>
cached(Cache) -> cached<Cache>;
template <class Cache, class K>
cached(Cache, K) -> cached<Cache, K>;

/// Strategy: try several strategies in order; the first that recovers wins.
/// If none does, the original failure stands.
template <class... Strategies>
class chain {
  static_assert(sizeof...(Strategies) > 0, "chain: name at least one strategy");
  static_assert((!std::is_same_v<Strategies, none_t> && ...), "chain: none changes the result type; use it alone");

 public:
  explicit chain(Strategies... s) : s_{std::move(s)...} {}
  static constexpr std::string_view name = "chained";

  template <class T, class Call>
  detail::recovered_t<T> recover(call_context& ctx, const failure& why, const Call& call, fallback_info& info) const {
    detail::recovered_t<T> out;
    std::apply(
        [&](const Strategies&... s) {
          (void)((out = s.template recover<T>(ctx, why, call, info),
                  out.has_value() ? (info.strategy = s.name, true) : false) ||
                 ...);
        },
        s_);
    return out;
  }

  template <class T, class Call>
  void record(const T& value, const Call& call) const {
    std::apply([&](const Strategies&... s) { (record_one(s, value, call), ...); }, s_);
  }

 private:
  template <class S, class T, class Call>
  static void record_one(const S& s, const T& value, const Call& call) {
    if constexpr (requires { s.template record<T>(value, call); }) s.template record<T>(value, call);
  }

  std::tuple<Strategies...> s_;
};

/// Replaces failures (those options.handle takes) with the strategy's result
/// and reports each replacement (on_activated and the fallback_activated
/// event). A value: copies share the event hub; a cached strategy's cache is
/// shared anyway.
template <class Strategy>
class fallback {
 public:
  /// A fallback with a strategy and options.
  explicit fallback(Strategy s, fallback_options options = {})
      : strategy_{std::move(s)},
        options_{std::make_shared<const fallback_options>(std::move(options))},
        checks_results_{options_->handle.has_result_predicates()} {}

  /// The strategy.
  const Strategy& strategy() const noexcept { return strategy_; }
  /// The clock of a cached strategy's cache: a pipeline runs on it (or
  /// refuses another), so entry ages move with the pipeline's time.
  const clock_ref& clock() const noexcept requires requires(const Strategy& s) {
    { s.cache().clock() } -> std::convertible_to<const clock_ref&>;
  }
  { return strategy_.cache().clock(); }
  /// This policy's events (fallback_activated); copies share it.
  event_hub& events() const noexcept { return hub_->hub; }

  /// Never waits or blocks: a coroutine's co_call runs it on the awaiting thread (coro.hpp).
  static constexpr bool never_waits = true;

  template <class Next, class Call>
  auto execute(call_context& ctx, Next&& next, const Call& call) const {
    return handle(ctx, next(ctx), call);
  }

  /// Without a call description: the cached strategy has no arguments to key on (one entry).
  template <class Next>
  auto execute(call_context& ctx, Next&& next) const {
    static constexpr detail::opaque_call opaque{};
    return handle(ctx, next(ctx), call_view<0, detail::opaque_call>{opaque});
  }

  /// The async form: the fallback runs as the inner outcome's continuation.
  template <class R, class Next, class Call>
  void execute_async(call_context& ctx, Next& next, const Call& call, async_callback<R> done) const {
    using T = std::conditional_t<std::is_same_v<Strategy, none_t>, typename detail::optional_value<R>::type, R>;
    next(ctx, async_callback<T>{[this, &ctx, &call, done = std::move(done)](outcome<T> o) mutable {
           done(handle(ctx, std::move(o), call));
         }});
  }

 private:
  template <class T>
  using result_t = std::conditional_t<std::is_same_v<Strategy, none_t>, std::optional<T>, T>;

  template <class T, class Call>
  outcome<result_t<T>> handle(call_context& ctx, outcome<T>&& o, const Call& call) const {
    if (o.has_value()) [[likely]] {
      if constexpr (std::is_void_v<T>) {
        if constexpr (std::is_same_v<Strategy, none_t>) return outcome<result_t<T>>{std::in_place};
        return std::move(o);
      } else {
        if (!checks_results_ || !refuses(*o)) [[likely]] {
          if constexpr (requires { strategy_.template record<T>(*o, call); }) {
            try {
              strategy_.template record<T>(*o, call);
            } catch (...) {
              // A full cache must not fail a good call.
            }
          }
          if constexpr (std::is_same_v<Strategy, none_t>) return outcome<result_t<T>>{std::in_place, std::move(*o)};
          else return std::move(o);
        }
        return recover(ctx, o, failure{&*o}, call);
      }
    }
    if (o.has_exception()) return recover(ctx, o, failure{&o.exception()}, call);
    return recover(ctx, o, failure{&o.rejection()}, call);
  }

  // Out of line, so that the success path of a fallback without a
  // results() predicate stays as small as it was.
  template <class T>
  [[gnu::noinline]] bool refuses(const T& value) const {
    return options_->handle.matches(failure{&value});
  }

  // Inlined, as it was before handle's results() check: called out of
  // line, it takes ctx's address, and g++ then builds the whole context on
  // the happy path too (2.5 ns to 5 ns in bench_timeout_fallback_async).
  template <class T, class Call>
  [[gnu::always_inline]] outcome<result_t<T>> recover(call_context& ctx, outcome<T>& o, const failure& why,
                                                      const Call& call) const {
    using R = result_t<T>;
    bool handled = why.is_result();  // handle took the value already
    try {
      if (!handled) handled = options_->handle.matches(why);
    } catch (...) {
      return outcome<R>{std::current_exception()};
    }
    if (handled) {
      fallback_info info{ctx.operation, Strategy::name, why};
      if constexpr (std::is_same_v<Strategy, none_t>) {
        report(info);
        return outcome<R>{std::in_place};
      } else {
        auto v = strategy_.template recover<T>(ctx, why, call, info);
        if (v) {
          report(info);
          if constexpr (std::is_void_v<T>) return outcome<R>{};
          else return outcome<R>{std::in_place, std::move(*v)};
        }
      }
    }
    if (why.is_result()) {  // the refused result stands when nothing replaced it
      if constexpr (std::is_same_v<Strategy, none_t>) return outcome<R>{std::in_place, std::move(*o)};
      else return std::move(o);
    }
    if (o.has_exception()) return outcome<R>{o.exception()};
    return outcome<R>{o.rejection()};
  }

  void report(const fallback_info& info) const noexcept {
    if (options_->on_activated) {
      try {
        options_->on_activated(info);
      } catch (...) {
        // A reporting callback must not undo the recovery.
      }
    }
    detail::emit(&hub_->hub, [&] {
      event e{fallback_activated_event};
      e.with_operation(info.operation).with("strategy", info.strategy).with_text("reason", info.cause.what());
      return e;
    });
  }

  struct hub_holder {
    mutable event_hub hub;
  };

  Strategy strategy_;
  std::shared_ptr<const fallback_options> options_;
  bool checks_results_ = false;  // options_->handle has a results() predicate, cached beside the strategy
  std::shared_ptr<const hub_holder> hub_ = std::make_shared<const hub_holder>();
};

}  // namespace v1
}  // namespace resilience
