// resilience/events.hpp: the generic event record policies emit, and the hubs
// that deliver it.
//
// An event is a small record: its kind (a category object compared by
// address, declared by the policy that emits it, like rejection_kind), the
// name of the policy instance (source), a severity, the time on the policy's
// clock, the call's operation and tenant, and a few typed fields. Every
// policy instance owns an event_hub; global_events() sees the events of all
// of them. With no listener anywhere, emitting costs two relaxed loads and
// builds nothing.
//
//   breaker.events().subscribe([](const resilience::event& e) {
//     if (e.is(resilience::circuit_state_changed_event)) alert(e.source(), e.get<std::string_view>("to"));
//   });
//   resilience::global_events().subscribe(resilience::json_logger{stderr});  // logging.hpp
//
// A kind may name the metric series it drives (event_metric): metrics.hpp
// counts any kind's events that way, the library's and a user's alike.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "clock.hpp"

namespace resilience {
inline namespace v1 {

/// Severity of an event (and of its log line); a larger value is more severe.
enum class log_level : std::uint8_t { debug = 0, info = 1, warning = 2, error = 3 };

/// "debug", "info", "warning" or "error".
constexpr std::string_view to_string(log_level l) noexcept {
  switch (l) {
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warning: return "warning";
    case log_level::error: return "error";
  }
  return "unknown";
}

class event;
struct metric_family;  // metric_snapshot.hpp: a metric family's name, type and help

/// Where a label's value comes from: "source", "operation", "tenant", the
/// name of a field, or a constant written "=value".
struct event_label {
  std::string_view label;  ///< the label's name in the series
  std::string_view from;   ///< the event part that gives its value
};

/// A series an event kind drives. A counter family adds one per event, by
/// label values; a gauge family keeps the last value per label values. A
/// series whose source a watched object of `scope` wrote in the same scrape
/// is left out (the object's own numbers are exact; events only cover
/// objects nobody watches).
struct event_metric {
  const metric_family* family = nullptr;    ///< the family (declared with metric_families)
  std::array<event_label, 3> labels{};      ///< up to three labels; an empty label name ends the list
  double (*value)(const event&) = nullptr;  ///< a gauge's value; counters leave it null
  std::string_view scope{};                 ///< see metric_snapshot::cover()
};

/// What a kind says besides its name and severity.
struct event_kind_options {
  /// The JSON key the event's source is logged under ("name", "key"); empty: not logged.
  std::string_view source_key{};
  /// Log the call's operation (also when empty).
  bool operation = false;
  /// Log the call's tenant (also when empty).
  bool tenant = false;
  /// The series the kind drives, if any.
  std::span<const event_metric> metrics{};
};

/// What kind of event an event is. Declare one `inline constexpr` object per
/// kind, next to the policy that emits it; kinds compare by address.
///
///   inline constexpr resilience::event_kind switch_flipped_event{"switch_flipped", resilience::log_level::warning};
class event_kind {
 public:
  /// `name` (a string literal) is the event's name in logs ("retry_attempted").
  constexpr event_kind(std::string_view name, log_level severity, event_kind_options options = {}) noexcept
      : name_{name}, severity_{severity}, options_{options} {}
  event_kind(const event_kind&) = delete;
  event_kind& operator=(const event_kind&) = delete;

  /// The event's name ("retry_attempted").
  constexpr std::string_view name() const noexcept { return name_; }
  /// The severity of its events unless the emitter says otherwise.
  constexpr log_level severity() const noexcept { return severity_; }
  /// How it is logged and counted.
  constexpr const event_kind_options& options() const noexcept { return options_; }

  friend constexpr bool operator==(const event_kind& a, const event_kind& b) noexcept { return &a == &b; }

 private:
  std::string_view name_;
  log_level severity_;
  event_kind_options options_;
};

/// A field's value. Durations are logged in seconds, with "_seconds" after the key.
using event_value = std::variant<std::int64_t, double, duration, std::string_view, bool>;

/// One typed field of an event.
struct event_field {
  std::string_view name;  ///< a string literal
  event_value value;
};

/// One event: kind, source, severity, time, operation, tenant and up to
/// max_fields typed fields. String views (source, operation, string fields)
/// are valid only during the listener call, except text the event owns
/// (with_text); copy what you keep.
class event {
 public:
  /// Fields beyond this many are dropped.
  static constexpr std::size_t max_fields = 8;

  /// An event of `kind` from the policy instance `source` (its name, key...).
  explicit event(const event_kind& kind, std::string_view source = {}) noexcept
      : kind_{&kind}, source_{source}, severity_{kind.severity()} {}

  event(const event& other) : event{*other.kind_} { *this = other; }
  event(event&& other) noexcept : event{*other.kind_} { *this = std::move(other); }
  event& operator=(const event& other) {
    if (this != &other) assign(other, other.text_);
    return *this;
  }
  event& operator=(event&& other) noexcept {
    if (this != &other) {
      const std::string_view old_text{other.text_};
      copy_record(other);
      text_ = std::move(other.text_);
      rebase(old_text);
    }
    return *this;
  }
  ~event() = default;

  /// Its kind.
  const event_kind& kind() const noexcept { return *kind_; }
  /// True when it is of kind k.
  bool is(const event_kind& k) const noexcept { return kind_ == &k; }
  /// Its kind's name ("retry_attempted").
  std::string_view name() const noexcept { return kind_->name(); }
  /// The policy instance that emitted it (a breaker's name, a limiter's key...).
  std::string_view source() const noexcept { return source_; }
  /// How bad it is; the kind's severity unless the emitter chose another.
  log_level severity() const noexcept { return severity_; }
  /// When it happened, on the emitting policy's clock (the epoch when the policy has none at hand).
  time_point time() const noexcept { return time_; }
  /// The call's operation name, if any.
  std::string_view operation() const noexcept { return operation_; }
  /// The call's tenant, if any.
  std::string_view tenant() const noexcept { return tenant_; }
  /// The typed fields, in the order they were added.
  std::span<const event_field> fields() const noexcept { return {fields_.data(), count_}; }

  /// The field `name`, or null.
  const event_value* find(std::string_view name) const noexcept {
    for (std::size_t i = 0; i < count_; ++i)
      if (fields_[i].name == name) return &fields_[i].value;
    return nullptr;
  }
  /// True when it has a field `name`.
  bool has(std::string_view name) const noexcept { return find(name) != nullptr; }

  /// The field `name` as T (an integer, double, duration, std::string_view or
  /// bool); T{} when it is missing or of another type.
  template <class T>
  T get(std::string_view name) const noexcept {
    const event_value* v = find(name);
    if (v == nullptr) return T{};
    if constexpr (std::is_same_v<T, bool>) {
      const bool* b = std::get_if<bool>(v);
      return b != nullptr && *b;
    } else if constexpr (std::is_integral_v<T>) {
      const std::int64_t* i = std::get_if<std::int64_t>(v);
      return i != nullptr ? static_cast<T>(*i) : T{};
    } else {
      const T* t = std::get_if<T>(v);
      return t != nullptr ? *t : T{};
    }
  }

  /// Sets the time (the policy's clock).
  event& at(time_point t) noexcept {
    time_ = t;
    return *this;
  }
  /// Sets the severity.
  event& with_severity(log_level l) noexcept {
    severity_ = l;
    return *this;
  }
  /// Sets the call's operation name.
  event& with_operation(std::string_view op) noexcept {
    operation_ = op;
    return *this;
  }
  /// Sets the call's tenant.
  event& with_tenant(std::string_view t) noexcept {
    tenant_ = t;
    return *this;
  }

  /// Adds a field (`name` must outlive the event: a string literal).
  template <class T>
  requires std::is_integral_v<T> &&(!std::is_same_v<T, bool>)event& with(std::string_view name, T v) noexcept {
    return add(name, static_cast<std::int64_t>(v));
  }
  event& with(std::string_view name, double v) noexcept { return add(name, v); }
  event& with(std::string_view name, duration v) noexcept { return add(name, v); }
  event& with(std::string_view name, std::string_view v) noexcept { return add(name, v); }
  event& with(std::string_view name, const char* v) noexcept { return add(name, std::string_view{v}); }
  event& with(std::string_view name, bool v) noexcept { return add(name, v); }
  /// Adds a string field whose text the event owns (a failure's message
  /// built for the event): the first one costs no copy.
  event& with_text(std::string_view name, std::string text) {
    if (count_ == max_fields) return *this;
    if (text_.empty()) {
      text_ = std::move(text);
      return add(name, std::string_view{text_});
    }
    const std::string_view old{text_};
    const std::size_t at = text_.size();
    text_ += text;
    rebase(old);
    return add(name, std::string_view{text_}.substr(at));
  }

 private:
  event& add(std::string_view name, event_value v) noexcept {
    if (count_ < max_fields) fields_[count_++] = {name, v};
    return *this;
  }
  void copy_record(const event& o) noexcept {
    kind_ = o.kind_;
    source_ = o.source_;
    severity_ = o.severity_;
    time_ = o.time_;
    operation_ = o.operation_;
    tenant_ = o.tenant_;
    fields_ = o.fields_;
    count_ = o.count_;
  }
  void assign(const event& o, std::string_view old_text) {
    text_ = o.text_;
    copy_record(o);
    rebase(old_text);
  }
  // String fields that viewed `old` (owned text) view text_ now.
  void rebase(std::string_view old) noexcept {
    if (old.data() == text_.data()) return;
    for (std::size_t i = 0; i < count_; ++i)
      if (auto* s = std::get_if<std::string_view>(&fields_[i].value);
          s != nullptr && !s->empty() && s->data() >= old.data() && s->data() + s->size() <= old.data() + old.size())
        *s = std::string_view{text_.data() + (s->data() - old.data()), s->size()};
  }

  const event_kind* kind_;
  std::string_view source_;
  log_level severity_;
  time_point time_{};
  std::string_view operation_;
  std::string_view tenant_;
  std::array<event_field, max_fields> fields_{};
  std::size_t count_ = 0;
  std::string text_;  // owned string fields, one after another
};

/// A set of listeners. Thread-safe; listeners run on the emitting thread, and
/// a listener that throws is ignored (the observed call goes on).
class event_hub {
 public:
  using listener = std::function<void(const event&)>;
  /// Identifies a subscription for unsubscribe.
  using subscription = std::uint64_t;

  event_hub() = default;
  event_hub(const event_hub&) = delete;
  event_hub& operator=(const event_hub&) = delete;

  /// Adds a listener; returns its id.
  subscription subscribe(listener fn) {
    std::lock_guard lock{mutex_};
    auto next = std::make_shared<std::vector<entry>>(listeners_ ? *listeners_ : std::vector<entry>{});
    next->push_back({++last_id_, std::make_shared<listener>(std::move(fn))});
    listeners_ = std::move(next);
    active_.store(true, std::memory_order_release);
    return last_id_;
  }

  /// Removes a listener; false when it was not there.
  bool unsubscribe(subscription id) {
    std::lock_guard lock{mutex_};
    if (!listeners_) return false;
    auto next = std::make_shared<std::vector<entry>>(*listeners_);
    const auto before = next->size();
    std::erase_if(*next, [id](const entry& e) { return e.id == id; });
    if (next->size() == before) return false;
    active_.store(!next->empty(), std::memory_order_release);
    listeners_ = std::move(next);
    return true;
  }

  /// True when at least one listener is subscribed (a relaxed load).
  bool active() const noexcept { return active_.load(std::memory_order_relaxed); }

  /// Delivers e to every listener; never throws.
  void publish(const event& e) const noexcept {
    std::shared_ptr<const std::vector<entry>> snapshot;
    {
      std::lock_guard lock{mutex_};
      snapshot = listeners_;
    }
    if (!snapshot) return;
    for (const auto& l : *snapshot) {
      try {
        (*l.fn)(e);
      } catch (...) {
        // A listener's failure must not break the call it observes.
      }
    }
  }

 private:
  struct entry {
    subscription id;
    std::shared_ptr<listener> fn;
  };
  mutable std::mutex mutex_;
  std::shared_ptr<const std::vector<entry>> listeners_;
  subscription last_id_ = 0;
  std::atomic<bool> active_{false};
};

/// The process-wide hub: it receives every event of every policy.
inline event_hub& global_events() {
  static event_hub hub;
  return hub;
}

namespace detail {

// Builds the event only when someone listens, then publishes it to the
// instance's hub (may be null) and the global one. Never throws.
// Out of line and cold: building an event (a few hundred bytes) must not
// weigh on the inlining of the policy's own path.
template <class MakeEvent>
[[gnu::noinline, gnu::cold]] void emit_now(const event_hub* local, bool to_global, MakeEvent& make) noexcept {
  try {
    const event e = make();
    if (local != nullptr) local->publish(e);
    if (to_global) global_events().publish(e);
  } catch (...) {
    // Building the event failed (out of memory): observability never breaks a call.
  }
}

template <class MakeEvent>
void emit(const event_hub* local, MakeEvent&& make) noexcept {
  const bool to_local = local != nullptr && local->active();
  const bool to_global = global_events().active();
  if (!to_local && !to_global) return;
  emit_now(to_local ? local : nullptr, to_global, make);
}

}  // namespace detail

/// Emits an event built by make() (returning a resilience::event) to `local`
/// (a policy's own hub; may be null) and to global_events(), building it only
/// when someone listens there. Never throws. For policies of your own.
template <class MakeEvent>
void emit(const event_hub* local, MakeEvent&& make) noexcept {
  detail::emit(local, std::forward<MakeEvent>(make));
}

}  // namespace v1
}  // namespace resilience
