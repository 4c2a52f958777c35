// resilience/metrics.hpp: a metrics registry that renders the Prometheus
// text exposition format (version 0.0.4). It names no policy: each policy
// declares its families and writes its series next to its code
// (metric_snapshot.hpp), and a user's policy does the same.
//
// Two kinds of data end up in one scrape:
//  - series driven by events: an event kind names the series it drives
//    (event_metric), counted by a listener on global_events() (or on the
//    hubs you name);
//  - series read from watched objects when /metrics is scraped (breaker
//    state and call counts, limiter tokens, tiers, health), written by the
//    object's hook: `collect_metrics(const T&, metric_snapshot&)` (a member
//    or found by ADL), or for more control `watch_metrics(const T&,
//    metric_watch&, args...)`.
// Watching adds nothing to a policy's hot path.
//
//   resilience::metrics_registry metrics;             // prefix "greenlang"
//   metrics.watch(erp_breaker);
//   std::string body = metrics.render();              // serve as metrics_registry::content_type
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <charconv>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "detail/text_escape.hpp"
#include "events.hpp"
#include "metric_snapshot.hpp"

namespace resilience {
inline namespace v1 {

namespace detail {}  // namespace detail

namespace detail {

// A counter family with labels. The first increment of a label set takes an
// exclusive lock and allocates; later ones take a shared lock and do one
// relaxed atomic add. Series are never removed, so counters never go back.
class labeled_counter {
 public:
  explicit labeled_counter(std::size_t arity) : arity_{arity} {}

  void inc(std::initializer_list<std::string_view> values, std::uint64_t by = 1) {
    inc(std::span<const std::string_view>{values.begin(), values.size()}, by);
  }

  // A gauge's series: stores the bits of v (read them back with std::bit_cast<double>).
  void set(std::span<const std::string_view> values, double v) {
    update(values, std::bit_cast<std::uint64_t>(v), true);
  }

  void inc(std::span<const std::string_view> values, std::uint64_t by = 1) { update(values, by, false); }

 private:
  void update(std::span<const std::string_view> values, std::uint64_t by, bool store) {
    // Values are counted as they will read: two names that differ only in
    // invalid UTF-8 bytes are one series, so the scrape never repeats one.
    if (!std::all_of(values.begin(), values.end(), valid_utf8)) {
      std::array<std::string, 4> fixed;
      std::array<std::string_view, 4> views;
      const std::size_t n = std::min(values.size(), fixed.size());
      for (std::size_t i = 0; i < n; ++i) views[i] = fixed[i] = sanitized_utf8(values[i]);
      update(std::span<const std::string_view>{views.data(), n}, by, store);
      return;
    }
    std::array<char, 256> stack{};
    std::string heap;
    std::string_view key = make_key(values, stack, heap);
    {
      std::shared_lock lock{mutex_};
      if (const auto it = series_.find(key); it != series_.end()) {
        apply(it->second->value, by, store);
        return;
      }
    }
    std::unique_lock lock{mutex_};
    auto [it, inserted] = series_.try_emplace(std::string{key}, nullptr);
    if (inserted) it->second = std::make_unique<series>(std::vector<std::string>(values.begin(), values.end()));
    apply(it->second->value, by, store);
  }
  static void apply(std::atomic<std::uint64_t>& v, std::uint64_t by, bool store) noexcept {
    if (store) v.store(by, std::memory_order_relaxed);
    else v.fetch_add(by, std::memory_order_relaxed);
  }

 public:
  // Calls fn(values, count) for every series, in label order.
  template <class Fn>
  void for_each(Fn&& fn) const {
    std::shared_lock lock{mutex_};
    for (const auto& [key, s] : series_) fn(s->values, s->value.load(std::memory_order_relaxed));
  }

  std::size_t arity() const noexcept { return arity_; }

 private:
  struct series {
    explicit series(std::vector<std::string> v) : values{std::move(v)} {}
    std::vector<std::string> values;
    std::atomic<std::uint64_t> value{0};
  };

  // Label values, each prefixed by its length so that no value can imitate a
  // boundary; small keys stay on the stack.
  static std::string_view make_key(std::span<const std::string_view> values, std::array<char, 256>& stack,
                                   std::string& heap) {
    std::size_t need = 0;
    for (auto v : values) need += v.size() + sizeof(std::uint32_t);
    char* out = need <= stack.size() ? stack.data() : (heap.resize(need), heap.data());
    char* p = out;
    for (auto v : values) {
      const auto n = static_cast<std::uint32_t>(v.size());
      std::memcpy(p, &n, sizeof n);
      p += sizeof n;
      if (!v.empty()) std::memcpy(p, v.data(), v.size());  // an empty view's data() may be null
      p += v.size();
    }
    return {out, need};
  }

  std::size_t arity_;
  mutable std::shared_mutex mutex_;
  std::map<std::string, std::unique_ptr<series>, std::less<>> series_;
};

}  // namespace detail

/// Settings of a metrics_registry.
struct metrics_options {
  /// Prefix of every metric name ("greenlang" gives greenlang_circuit_breaker_state).
  /// Must be a valid metric name; empty means no prefix. Default: "greenlang".
  std::string prefix = "greenlang";
  /// Buckets (seconds) of the call-duration histograms. Default: default_duration_buckets().
  std::vector<double> duration_buckets = default_duration_buckets();
  /// Count the events of every policy through global_events() (default: true).
  /// When false, only the hubs of watched objects and of count_events_of()
  /// are counted; use that when several registries must not see each other's policies.
  bool count_global_events = true;
};

namespace detail {

// What the event listener maintains: one labeled series set per event_metric
// seen, keyed by its label values plus the event's source (last), so that a
// watched object's series can hide the event-derived ones of the same source.
struct event_counters {
  void on(const event& e) {
    for (const event_metric& m : e.kind().options().metrics) {
      if (m.family == nullptr) continue;
      std::array<std::string, 4> text;  // non-string label values, formatted
      std::array<std::string_view, 4> values;
      std::size_t n = 0;
      for (const event_label& l : m.labels) {
        if (l.label.empty()) break;
        values[n] = label_value(e, l.from, text[n]);
        ++n;
      }
      values[n++] = e.source();
      labeled_counter& c = series_for(m, n);
      if (m.value != nullptr) c.set({values.data(), n}, m.value(e));
      else c.inc({values.data(), n});
    }
  }

  // Calls fn(metric, values, raw) for every series.
  template <class Fn>
  void for_each(Fn&& fn) const {
    std::shared_lock lock{mutex_};
    for (const auto& entry : series_) {
      const event_metric& m = *entry.first;
      entry.second->for_each([&](const std::vector<std::string>& v, std::uint64_t raw) { fn(m, v, raw); });
    }
  }

 private:
  static std::string_view label_value(const event& e, std::string_view from, std::string& text) {
    if (!from.empty() && from.front() == '=') return from.substr(1);  // a constant
    if (from == "source") return e.source();
    if (from == "operation") return e.operation();
    if (from == "tenant") return e.tenant();
    const event_value* v = e.find(from);
    if (v == nullptr) return {};
    if (const auto* sv = std::get_if<std::string_view>(v)) return *sv;
    if (const auto* i = std::get_if<std::int64_t>(v)) text = std::to_string(*i);
    else if (const auto* b = std::get_if<bool>(v)) text = *b ? "true" : "false";
    else if (const auto* d = std::get_if<double>(v)) append_number(text, *d);
    else if (const auto* t = std::get_if<duration>(v)) append_number(text, std::chrono::duration<double>(*t).count());
    return text;
  }

  labeled_counter& series_for(const event_metric& m, std::size_t arity) {
    {
      std::shared_lock lock{mutex_};
      if (const auto it = series_.find(&m); it != series_.end()) return *it->second;
    }
    std::unique_lock lock{mutex_};
    auto& c = series_[&m];
    if (!c) c = std::make_unique<labeled_counter>(arity);
    return *c;
  }

  mutable std::shared_mutex mutex_;
  std::map<const event_metric*, std::unique_ptr<labeled_counter>> series_;
};

// Names claimed by watched objects, per scope, as they read in a label.
struct claims {
  std::mutex mutex;
  std::unordered_map<std::string, const void*> owner;

  bool claim(std::string_view scope, std::string_view name, const void* id, bool quiet) {
    std::string key{scope};
    key += '\0';
    key += label_text(name);
    std::lock_guard lock{mutex};
    const auto [it, inserted] = owner.try_emplace(std::move(key), id);
    if (inserted) return true;
    if (it->second == id || quiet) return false;
    throw std::invalid_argument{"metrics_registry: already watching another " + std::string{scope} + " named '" +
                                label_text(name) + "'"};
  }
};

}  // namespace detail

/// Collects resilience metrics and renders them in the Prometheus text
/// format 0.0.4. Thread-safe: events may arrive and render() may run on any
/// threads at once. Watched objects are kept alive by the registry (copies of
/// shared handles) unless their hook says otherwise (a rate_limiter registry,
/// which is not copyable, must outlive the metrics_registry).
///
/// Every family registered with metric_families is written, each with HELP
/// and TYPE lines, even before it has a sample. The library's families (names
/// without prefix):
///   circuit_breaker_state{name}                      gauge: 0 closed, 1 open, 2 half_open
///   circuit_breaker_calls_total{name,status}         counter
///   circuit_breaker_state_transitions_total{name,from,to} counter
///   circuit_breaker_call_duration_seconds{name}      histogram (metrics_options::duration_buckets)
///   circuit_breaker_failure_rate{name}               gauge, 0..1: the rate it decides on
///   (circuit_breaker_stats::failure_rate) circuit_breaker_slow_calls_total{name}           counter
///   bulkhead_rejections_total{name}                  counter
///   bulkhead_in_flight_calls{name}                   gauge
///   bulkhead_waiting_calls{name}                     gauge
///   bulkhead_max_concurrent_calls{name}              gauge
///   rate_limiter_tokens{key}                         gauge: permits available now
///   rate_limiter_requests_total{key,result}          counter, result = allowed | rejected
///   rate_limiter_violations_total{key}               counter
///   degradation_tier                                 gauge: 1 full, 2 core, 3 read_only, 4 maintenance
///   service_health{service}                          gauge: 1 healthy, 0 unhealthy
///   degradation_tier_changes_total{from,to}          counter
///   retry_attempts_total{operation}                  counter: retries scheduled
///   retry_exhausted_total{operation}                 counter: calls retry gave up on
///   timeouts_total{operation}                        counter
///   fallback_activations_total{operation,strategy}   counter
class metrics_registry {
 public:
  /// The Content-Type to serve render()'s text with.
  static constexpr std::string_view content_type = "text/plain; version=0.0.4; charset=utf-8";

  /// Throws std::invalid_argument naming the bad field (prefix, duration_buckets).
  explicit metrics_registry(metrics_options options = {})
      : options_{std::move(options)},
        events_{std::make_shared<detail::event_counters>()},
        claims_{std::make_shared<detail::claims>()} {
    if (!options_.prefix.empty() && !detail::valid_metric_name(options_.prefix))
      throw std::invalid_argument{"metrics_registry: prefix must be a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"};
    try {
      duration_histogram check{options_.duration_buckets};
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument{std::string{"metrics_registry: duration_buckets: "} + e.what()};
    }
    if (options_.count_global_events) subscribe(global_events());
  }

  metrics_registry(const metrics_registry&) = delete;
  metrics_registry& operator=(const metrics_registry&) = delete;

  ~metrics_registry() {
    for (auto& [hub, id] : subscriptions_) hub->unsubscribe(id);
  }

  /// Counts the events of one policy (any object with `event_hub& events()`),
  /// keeping a copy of it so that its hub stays alive. Useful with
  /// count_global_events = false; with it true the policy is already counted,
  /// so this does nothing.
  template <class Policy>
  requires requires(const Policy& p) {
    { p.events() } -> std::same_as<event_hub&>;
  }
  void count_events_of(const Policy& policy) {
    if (options_.count_global_events) return;
    auto keep = std::make_shared<Policy>(policy);
    std::lock_guard lock{mutex_};
    keep_alive_.push_back(keep);
    subscribe_locked(keep->events());
  }

  /// Reads an object at each scrape through its hook, found as a member or
  /// by ADL: `watch_metrics(const T&, metric_watch&, args...)` when it has
  /// one (claims, keeps and collects as it sees fit; the library's policies
  /// use it), else `collect_metrics(const T&, metric_snapshot&)`: the object
  /// is copied (kept alive) and its events() are counted when the registry
  /// does not count global_events(). What each library policy writes is
  /// documented at its hook (circuit_breaker: call_durations as args...).
  template <class T, class... Args>
  void watch(const T& object, Args&&... args) {
    metric_watch w{options_.duration_buckets,
                   [c = claims_](std::string_view scope, std::string_view name, const void* id, bool quiet) {
                     return c->claim(scope, name, id, quiet);
                   }};
    if constexpr (requires { object.watch_metrics(w, std::forward<Args>(args)...); }) {
      object.watch_metrics(w, std::forward<Args>(args)...);
    } else if constexpr (requires { watch_metrics(object, w, std::forward<Args>(args)...); }) {
      watch_metrics(object, w, std::forward<Args>(args)...);
    } else {
      static_assert(sizeof...(Args) == 0, "metrics_registry::watch: extra arguments need a watch_metrics hook");
      auto keep = std::make_shared<const T>(object);
      if constexpr (requires(metric_snapshot & s) { keep->collect_metrics(s); }) {
        w.collect([keep](metric_snapshot& s) { keep->collect_metrics(s); });
      } else {
        static_assert(
            requires(metric_snapshot & s) { collect_metrics(*keep, s); },
            "metrics_registry::watch: T needs collect_metrics(const T&, metric_snapshot&) or watch_metrics()");
        w.collect([keep](metric_snapshot& s) { collect_metrics(*keep, s); });
      }
      if constexpr (requires {
                      { keep->events() } -> std::same_as<event_hub&>;
                    })
        w.count_events(keep->events());
      w.keep(keep);
    }
    if (!w.collector_fn()) return;  // the hook added nothing (watched already)
    std::lock_guard lock{mutex_};
    const auto after =
        std::find_if(watched_.begin(), watched_.end(), [&](const auto& c) { return c.first > w.rank(); });
    watched_.insert(after, {w.rank(), std::make_shared<const collector>(w.collector_fn())});
    if (w.kept()) keep_alive_.push_back(w.kept());
    if (w.hub() != nullptr && !options_.count_global_events) subscribe_locked(*w.hub());
  }

  /// Adds a collector that contributes samples at every scrape (names
  /// without the prefix). For user metrics beside the library's. Collectors
  /// run without the registry's lock: one may call watch() or
  /// add_collector() (in force from the next scrape); render() of this same
  /// registry from its own collector throws std::logic_error.
  void add_collector(std::function<void(metric_snapshot&)> collect) {
    if (!collect) throw std::invalid_argument{"metrics_registry: collector must not be empty"};
    std::lock_guard lock{mutex_};
    collectors_.push_back(std::make_shared<const collector>(std::move(collect)));
  }

  /// The metrics text, every family with HELP and TYPE lines.
  std::string render() const {
    std::string out;
    render(out);
    return out;
  }

  /// Appends the metrics text to out.
  void render(std::string& out) const {
    const render_guard guard{this};
    metric_snapshot s;
    for (const metric_family* f : registered_metric_families()) s.declare(*f);
    // What to read is copied under the lock; reading runs without it, so a
    // collector that calls back into this registry cannot deadlock.
    std::vector<std::shared_ptr<const collector>> collectors;
    std::vector<std::pair<int, std::shared_ptr<const collector>>> watched;
    {
      std::lock_guard lock{mutex_};
      collectors = collectors_;
      watched = watched_;
    }
    for (const auto& collect : collectors) (*collect)(s);
    for (const auto& w : watched) (*w.second)(s);
    add_event_metrics(s);
    s.write(out, options_.prefix);
  }

  /// The options in force.
  const metrics_options& options() const noexcept { return options_; }

 private:
  using collector = std::function<void(metric_snapshot&)>;

  // Marks the registries this thread is rendering: a collector that renders
  // its own registry would recurse forever, so it gets an exception instead.
  struct render_guard {
    explicit render_guard(const metrics_registry* r) : self{r}, outer{top()} {
      for (const render_guard* g = outer; g != nullptr; g = g->outer)
        if (g->self == r) throw std::logic_error{"metrics_registry: render() called from one of its own collectors"};
      top() = this;
    }
    ~render_guard() { top() = outer; }
    render_guard(const render_guard&) = delete;
    render_guard& operator=(const render_guard&) = delete;
    static const render_guard*& top() noexcept {
      static thread_local const render_guard* innermost = nullptr;
      return innermost;
    }
    const metrics_registry* self;
    const render_guard* outer;
  };

  // The series events drive, except those of a source a watched object wrote.
  void add_event_metrics(metric_snapshot& s) const {
    events_->for_each([&](const event_metric& m, const std::vector<std::string>& v, std::uint64_t raw) {
      if (!m.scope.empty() && s.covered(m.scope, v.back())) return;
      std::array<metric_label, 3> labels;
      std::size_t n = 0;
      for (const event_label& l : m.labels) {
        if (l.label.empty()) break;
        labels[n] = {l.label, v[n]};
        ++n;
      }
      const double value = m.value != nullptr ? std::bit_cast<double>(raw) : static_cast<double>(raw);
      s.add(m.family->name, m.family->type, m.family->help, std::span<const metric_label>{labels.data(), n}, value);
    });
  }

  void subscribe(event_hub& hub) {
    std::lock_guard lock{mutex_};
    subscribe_locked(hub);
  }
  void subscribe_locked(event_hub& hub) {
    for (const auto& [h, id] : subscriptions_)
      if (h == &hub) return;  // one subscription per hub: an event is counted once
    std::weak_ptr<detail::event_counters> counters = events_;
    const auto id = hub.subscribe([counters](const event& e) {
      if (auto c = counters.lock()) c->on(e);
    });
    subscriptions_.emplace_back(&hub, id);
  }

  metrics_options options_;
  std::shared_ptr<detail::event_counters> events_;
  std::shared_ptr<detail::claims> claims_;  // shared with the hooks' collectors
  mutable std::mutex mutex_;                // guards the vectors below; render holds it while copying them
  std::vector<std::shared_ptr<const collector>> collectors_;  // shared: render copies the lists, not the functions
  std::vector<std::pair<int, std::shared_ptr<const collector>>> watched_;  // by rank, then watch order
  std::vector<std::shared_ptr<const void>> keep_alive_;
  std::vector<std::pair<event_hub*, event_hub::subscription>> subscriptions_;
};

}  // namespace v1
}  // namespace resilience
