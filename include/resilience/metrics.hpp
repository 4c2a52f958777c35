// resilience/metrics.hpp: a metrics registry that renders the Prometheus
// text exposition format (version 0.0.4).
//
// Two kinds of data end up in one scrape:
//  - counters driven by events (retries, timeouts, fallbacks, rate-limit
//    violations, bulkhead rejections, breaker transitions, tier changes),
//    counted by a listener on global_events() (or on the hubs you name);
//  - gauges and counters read from the watched objects when /metrics is
//    scraped (breaker state and call counts, limiter tokens, tiers, health).
// Watching adds nothing to a policy's hot path. The call-duration histogram
// of a breaker costs one histogram update per call; by default it is kept
// only for breakers that time their calls anyway (slow-call tracking), since
// timing a breaker that would not read its clock costs two clock reads per
// call: ask for it with watch(breaker, call_durations::always).
//
//   resilience::metrics_registry metrics;             // prefix "greenlang"
//   metrics.watch(erp_breaker);
//   std::string body = metrics.render();              // serve as metrics_registry::content_type
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "bulkhead.hpp"
#include "circuit_breaker.hpp"
#include "clock.hpp"
#include "degradation.hpp"
#include "detail/text_escape.hpp"
#include "errors.hpp"
#include "events.hpp"
#include "rate_limit.hpp"

namespace resilience {
inline namespace v1 {

/// The kinds of metric the text format knows (and that this registry writes).
enum class metric_type : std::uint8_t { counter, gauge, histogram };

/// One label: name and value (the value is escaped when written).
struct metric_label {
  std::string_view name;
  std::string_view value;
};

namespace detail {

inline void append_number(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    std::array<char, 32> buf{};
    const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);  // shortest round-trip form
    out.append(buf.data(), r.ptr);
  }
}

inline void append_number(std::string& out, std::uint64_t v) {
  std::array<char, 24> buf{};
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  out.append(buf.data(), r.ptr);
}

// Label values and HELP text go through the escaping shared with the JSON
// logger: invalid UTF-8 becomes U+FFFD, so one bad byte in an operation name
// cannot make a scraper reject every later scrape.
inline void append_label_value(std::string& out, std::string_view v) { append_prometheus_label_value(out, v); }
inline void append_help(std::string& out, std::string_view v) { append_prometheus_help(out, v); }

inline bool valid_metric_name(std::string_view n) noexcept { return valid_prometheus_metric_name(n); }

// Label names: [a-zA-Z_][a-zA-Z0-9_]*, and "le" belongs to histograms.
inline bool valid_label_name(std::string_view n) noexcept { return valid_prometheus_label_name(n) && n != "le"; }

// Hashes std::string and std::string_view alike (heterogeneous lookup).
struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view v) const noexcept { return std::hash<std::string_view>{}(v); }
};

// A name as it reads in a label value: the key under which two objects collide.
inline std::string label_text(std::string_view v) {
  std::string out;
  append_prometheus_label_value(out, v);
  return out;
}

}  // namespace detail

/// The samples of one scrape, grouped into families. Collectors add to it;
/// the registry writes it. Names given here have no prefix: the registry adds
/// "<prefix>_". A series already in the snapshot is not added again (the
/// first wins), so a scrape never repeats one.
class metric_snapshot {
 public:
  /// Declares a family (idempotent) so that its HELP and TYPE lines appear even without samples.
  void declare(std::string_view name, metric_type type, std::string_view help) { family_for(name, type, help); }

  /// Adds one counter or gauge sample.
  void add(std::string_view name, metric_type type, std::string_view help, std::initializer_list<metric_label> labels,
           double value) {
    check_labels(labels);
    auto& f = family_for(name, type, help);
    const std::size_t start = f.body.size();
    append_labels(f.body, labels, {});
    f.finish(start, value);
  }

  /// Adds one histogram: cumulative bucket counts for `bounds` (seconds), then sum and count.
  void add_histogram(std::string_view name, std::string_view help, std::initializer_list<metric_label> labels,
                     const std::vector<double>& bounds, const std::vector<std::uint64_t>& cumulative, double sum,
                     std::uint64_t count) {
    check_labels(labels);
    auto& f = family_for(name, metric_type::histogram, help);
    const auto line = [&](std::string_view suffix, std::string_view le, double value) {
      const std::size_t start = f.body.size();
      f.body += suffix;
      append_labels(f.body, labels, le);
      f.finish(start, value);
    };
    std::string le;
    for (std::size_t i = 0; i < bounds.size(); ++i) {
      le.clear();
      detail::append_number(le, bounds[i]);
      line("_bucket", le, static_cast<double>(cumulative[i]));
    }
    line("_bucket", "+Inf", static_cast<double>(count));
    line("_sum", {}, sum);
    line("_count", {}, static_cast<double>(count));
  }

  /// Writes every family in the text format, names prefixed with "<prefix>_".
  void write(std::string& out, std::string_view prefix) const {
    for (const auto& f : families_) {
      std::string full{prefix};
      if (!full.empty()) full += '_';
      full += f.name;
      out += "# HELP ";
      out += full;
      out += ' ';
      detail::append_help(out, f.help);
      out += "\n# TYPE ";
      out += full;
      out += f.type == metric_type::counter ? " counter\n" : f.type == metric_type::gauge ? " gauge\n" : " histogram\n";
      for (std::size_t i = 0; i < f.lines.size(); ++i) {
        const std::size_t end = i + 1 < f.lines.size() ? f.lines[i + 1].start : f.body.size();
        out += full;
        out.append(f.body, f.lines[i].start, end - f.lines[i].start);
      }
    }
  }

 private:
  // One family's samples as text, each line without the family name
  // ("_bucket{a=\"x\",le=\"1\"} 3\n"), in one buffer: a scrape of many
  // series allocates per family, not per sample. An open-addressing table of
  // line indices finds a repeated series.
  struct family {
    struct line {
      std::size_t start;       // in body
      std::size_t series_len;  // the part before " value\n"
      std::size_t hash;
    };
    std::string name;
    metric_type type = metric_type::gauge;
    std::string help;
    std::string body;
    std::vector<line> lines;
    struct slot {
      std::uint32_t line = 0;  // 0 empty, else line index + 1
      std::uint32_t tag = 0;   // the hash's high bits: most mismatches never touch `lines`
    };
    std::vector<slot> table;  // a power of two, at most half full

    std::string_view series(const line& l) const { return std::string_view{body}.substr(l.start, l.series_len); }

    // body holds a new series from `start`: writes its value, or drops it when the series is already here.
    void finish(std::size_t start, double value) {
      const std::string_view s = std::string_view{body}.substr(start);
      const std::size_t h = std::hash<std::string_view>{}(s);
      if (table.size() < 2 * (lines.size() + 1)) grow();
      const std::size_t mask = table.size() - 1;
      const auto tag = static_cast<std::uint32_t>(static_cast<std::uint64_t>(h) >> 32);
      std::size_t i = h & mask;
      for (; table[i].line != 0; i = (i + 1) & mask) {
        if (table[i].tag != tag) continue;
        const line& l = lines[table[i].line - 1];
        if (l.hash == h && series(l) == s) {
          body.resize(start);
          return;
        }
      }
      table[i] = {static_cast<std::uint32_t>(lines.size() + 1), tag};
      lines.push_back({start, s.size(), h});
      body += ' ';
      detail::append_number(body, value);
      body += '\n';
    }

    void grow() {
      std::vector<slot> t(std::max<std::size_t>(64, table.size() * 2));
      const std::size_t mask = t.size() - 1;
      for (std::size_t k = 0; k < lines.size(); ++k) {
        std::size_t i = lines[k].hash & mask;
        while (t[i].line != 0) i = (i + 1) & mask;
        t[i] = {static_cast<std::uint32_t>(k + 1), static_cast<std::uint32_t>(static_cast<std::uint64_t>(lines[k].hash) >> 32)};
      }
      table.swap(t);
    }
  };

  family& family_for(std::string_view name, metric_type type, std::string_view help) {
    for (auto& f : families_)
      if (f.name == name) {
        if (f.type != type) throw std::logic_error{"metrics: " + std::string{name} + " declared with two types"};
        return f;
      }
    if (!detail::valid_metric_name(name)) throw std::invalid_argument{"metrics: invalid metric name " + std::string{name}};
    auto& f = families_.emplace_back();
    f.name = name;
    f.type = type;
    f.help = help;
    return f;
  }

  static void check_labels(std::initializer_list<metric_label> labels) {
    for (const auto& l : labels)
      if (!detail::valid_label_name(l.name))
        throw std::invalid_argument{"metrics: invalid label name " + std::string{l.name}};
  }

  // Appends "{a=\"x\",le=\"1\"}", or nothing without labels; names checked already.
  static void append_labels(std::string& out, std::initializer_list<metric_label> labels, std::string_view le) {
    if (labels.size() == 0 && le.empty()) return;
    out += '{';
    bool first = true;
    for (const auto& l : labels) {
      if (!first) out += ',';
      first = false;
      out += l.name;
      out += "=\"";
      detail::append_label_value(out, l.value);
      out += '"';
    }
    if (!le.empty()) {
      if (!first) out += ',';
      out += "le=\"";
      out += le;
      out += '"';
    }
    out += '}';
  }

  std::deque<family> families_;  // in declaration order: the output is stable between scrapes
};

/// Upper bounds, in seconds, of the call-duration histogram's buckets by
/// default: 5 ms to 60 s, covering a cached factor lookup (ms) up to report
/// generation (60 s timeout).
inline std::vector<double> default_duration_buckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

/// A duration histogram with fixed buckets. observe() is lock-free and
/// allocation-free: one relaxed increment of a bucket and one of the sum.
class duration_histogram {
 public:
  /// bounds: strictly increasing upper bounds in seconds, all > 0 and finite.
  explicit duration_histogram(std::vector<double> bounds = default_duration_buckets())
      : bounds_{std::move(bounds)}, counts_(bounds_.size() + 1) {
    if (bounds_.empty()) throw std::invalid_argument{"duration_histogram: buckets must not be empty"};
    for (std::size_t i = 0; i < bounds_.size(); ++i) {
      if (!std::isfinite(bounds_[i]) || bounds_[i] <= 0)
        throw std::invalid_argument{"duration_histogram: buckets must be finite and > 0"};
      if (i > 0 && bounds_[i] <= bounds_[i - 1])
        throw std::invalid_argument{"duration_histogram: buckets must be strictly increasing"};
      bounds_ns_.push_back(static_cast<std::int64_t>(std::ceil(bounds_[i] * 1e9)));
    }
  }

  /// Records one duration (negative durations count as zero).
  void observe(duration d) noexcept {
    const auto ns = std::max<std::int64_t>(d.count(), 0);
    const auto it = std::lower_bound(bounds_ns_.begin(), bounds_ns_.end(), ns);  // le: bound >= value
    counts_[static_cast<std::size_t>(it - bounds_ns_.begin())].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(static_cast<std::uint64_t>(ns), std::memory_order_relaxed);
  }

  /// The bucket bounds in seconds.
  const std::vector<double>& bounds() const noexcept { return bounds_; }

  /// Adds this histogram to a snapshot as family `name`.
  void collect(metric_snapshot& s, std::string_view name, std::string_view help,
               std::initializer_list<metric_label> labels) const {
    std::vector<std::uint64_t> cumulative(bounds_.size());
    std::uint64_t running = 0;
    for (std::size_t i = 0; i < bounds_.size(); ++i) cumulative[i] = running += counts_[i].load(std::memory_order_relaxed);
    const std::uint64_t count = running + counts_.back().load(std::memory_order_relaxed);
    const double sum = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
    s.add_histogram(name, help, labels, bounds_, cumulative, sum, count);
  }

 private:
  std::vector<double> bounds_;
  std::vector<std::int64_t> bounds_ns_;
  std::vector<std::atomic<std::uint64_t>> counts_;  // per bucket, not cumulative; last = above every bound
  std::atomic<std::uint64_t> sum_ns_{0};
};

/// Whether a watched breaker feeds circuit_breaker_call_duration_seconds.
enum class call_durations : std::uint8_t {
  /// Only a breaker that times its calls anyway (a rate window with
  /// slow_call_duration set): it costs one histogram update per call and no
  /// extra clock read. The default.
  when_timed,
  /// Every watched breaker. One that did not time its calls now reads its
  /// clock twice per call (about 55 ns with the steady clock here, see the README).
  always,
  /// No histogram.
  never,
};

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

  void inc(std::span<const std::string_view> values, std::uint64_t by = 1) {
    // Values are counted as they will read: two names that differ only in
    // invalid UTF-8 bytes are one series, so the scrape never repeats one.
    if (!std::all_of(values.begin(), values.end(), valid_utf8)) {
      std::array<std::string, 4> fixed;
      std::array<std::string_view, 4> views;
      const std::size_t n = std::min(values.size(), fixed.size());
      for (std::size_t i = 0; i < n; ++i) views[i] = fixed[i] = sanitized_utf8(values[i]);
      inc(std::span<const std::string_view>{views.data(), n}, by);
      return;
    }
    std::array<char, 256> stack{};
    std::string heap;
    std::string_view key = make_key(values, stack, heap);
    {
      std::shared_lock lock{mutex_};
      if (const auto it = series_.find(key); it != series_.end()) {
        it->second->value.fetch_add(by, std::memory_order_relaxed);
        return;
      }
    }
    std::unique_lock lock{mutex_};
    auto [it, inserted] = series_.try_emplace(std::string{key}, nullptr);
    if (inserted) it->second = std::make_unique<series>(std::vector<std::string>(values.begin(), values.end()));
    it->second->value.fetch_add(by, std::memory_order_relaxed);
  }

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
      std::memcpy(p, v.data(), v.size());
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

// What the event listener maintains: counters, plus the last state seen for
// objects that are not watched (a breaker or manager known only by its events).
struct event_counters {
  labeled_counter retry_attempts{1};       // operation
  labeled_counter retry_exhausted{1};      // operation
  labeled_counter timeouts{1};             // operation
  labeled_counter fallbacks{2};            // operation, strategy
  labeled_counter rate_violations{1};      // key
  labeled_counter breaker_transitions{3};  // name, from, to
  labeled_counter breaker_rejections{1};   // name
  labeled_counter bulkhead_rejections{1};  // name
  labeled_counter tier_changes{2};         // from, to

  mutable std::mutex last_mutex;
  std::map<std::string, circuit_state, std::less<>> breaker_state;
  std::map<std::string, bool, std::less<>> service_healthy;
  std::optional<tier> current_tier;

  void on(const event& e) {
    std::visit([this](const auto& ev) { count(ev); }, e);
  }

 private:
  void count(const retry_attempted& e) { retry_attempts.inc({e.operation}); }
  void count(const retries_exhausted& e) { retry_exhausted.inc({e.operation}); }
  void count(const timeout_occurred& e) { timeouts.inc({e.operation}); }
  void count(const fallback_activated& e) { fallbacks.inc({e.operation, e.strategy}); }
  void count(const rate_limit_violated& e) { rate_violations.inc({e.key}); }
  void count(const circuit_state_changed& e) {
    breaker_transitions.inc({e.name, to_string(e.from), to_string(e.to)});
    std::lock_guard lock{last_mutex};
    remember(breaker_state, e.name, e.to);
  }
  void count(const circuit_rejected& e) { breaker_rejections.inc({e.name}); }
  void count(const bulkhead_rejected& e) { bulkhead_rejections.inc({e.name}); }
  void count(const tier_changed& e) {
    tier_changes.inc({to_string(e.from), to_string(e.to)});
    std::lock_guard lock{last_mutex};
    current_tier = e.to;
  }
  void count(const service_health_changed& e) {
    std::lock_guard lock{last_mutex};
    remember(service_healthy, e.service, e.healthy);
  }

  template <class Map, class V>
  static void remember(Map& m, std::string_view key, V v) {
    if (!valid_utf8(key)) return remember(m, std::string_view{sanitized_utf8(key)}, v);
    if (auto it = m.find(key); it != m.end()) it->second = v;
    else m.emplace(std::string{key}, v);
  }
};

}  // namespace detail

/// Collects resilience metrics and renders them in the Prometheus text
/// format 0.0.4. Thread-safe: events may arrive and render() may run on any
/// threads at once. Watched objects are kept alive by the registry (copies of
/// shared handles), except a rate_limiter registry, which is not copyable:
/// it must outlive the metrics_registry.
///
/// Families written, each with HELP and TYPE lines (names without prefix):
///   circuit_breaker_state{name}                      gauge: 0 closed, 1 open, 2 half_open
///   circuit_breaker_calls_total{name,status}         counter
///   circuit_breaker_state_transitions_total{name,from,to} counter
///   circuit_breaker_call_duration_seconds{name}      histogram (metrics_options::duration_buckets)
///   circuit_breaker_failure_rate{name}               gauge, 0..1: the rate it decides on (circuit_breaker_stats::failure_rate)
///   circuit_breaker_slow_calls_total{name}           counter
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
      : options_{std::move(options)}, events_{std::make_shared<detail::event_counters>()} {
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

  /// Reads a circuit breaker at each scrape: state, calls by status,
  /// transitions, failure rate, and (see call_durations) feeds
  /// circuit_breaker_call_duration_seconds through on_call_recorded.
  /// Watching the same breaker again does nothing; another breaker with the
  /// same name throws std::invalid_argument naming it.
  void watch(const circuit_breaker& breaker, call_durations durations = call_durations::when_timed) {
    std::lock_guard lock{mutex_};
    adopt_breaker(breaker, durations);
    if (!options_.count_global_events) subscribe_locked(breaker.events());
  }

  /// Reads every breaker of a circuit_breaker_registry at each scrape,
  /// including breakers created after this call (their durations are
  /// recorded from the first scrape that sees them). The registry must
  /// outlive this one (global_circuit_breakers() does).
  void watch(const circuit_breaker_registry& breakers, call_durations durations = call_durations::when_timed) {
    std::lock_guard lock{mutex_};
    for (const auto& [reg, d] : breaker_registries_)
      if (reg == &breakers) return;  // watching it again does nothing
    breaker_registries_.push_back({&breakers, durations});
  }

  /// Reads a bulkhead at each scrape: calls in flight, callers waiting, the
  /// limit, and rejections. Watching the same bulkhead again does nothing;
  /// another bulkhead with the same name throws std::invalid_argument naming it.
  void watch(const bulkhead& b) {
    auto keep = std::make_shared<const bulkhead>(b);
    {
      std::lock_guard lock{mutex_};
      const auto [it, inserted] = bulkhead_names_.try_emplace(detail::label_text(b.name()), b);
      if (!inserted) {
        if (it->second == b) return;
        throw std::invalid_argument{"metrics_registry: already watching another bulkhead named '" + it->first + "'"};
      }
    }
    add_watcher(
        [keep](metric_snapshot& s, covered& c) {
          using enum metric_type;
          const std::string& name = keep->name();
          const auto st = keep->stats();
          c.add(c.bulkheads, name);
          s.add("bulkhead_in_flight_calls", gauge, {}, {{"name", name}}, static_cast<double>(st.in_flight));
          s.add("bulkhead_waiting_calls", gauge, {}, {{"name", name}}, static_cast<double>(st.waiting));
          s.add("bulkhead_max_concurrent_calls", gauge, {}, {{"name", name}}, static_cast<double>(st.max_concurrent_calls));
          s.add("bulkhead_rejections_total", counter, {}, {{"name", name}}, static_cast<double>(st.rejected));
        },
        &keep->events(), keep);
  }

  /// Reads every key of a rate_limiter registry at each scrape: tokens,
  /// requests by result, violations (episodes of limiting, see
  /// rate_limit_stats). Turns on grant counting for every key, present and
  /// future (requests_total{result="allowed"} needs it; it is off by
  /// default): grants are counted from this call on. The registry is not
  /// copyable: it must outlive this one. Watching it again does nothing. A
  /// key already written in a scrape (by a limiter or registry watched
  /// earlier) is not written again: the first watched wins.
  void watch(const rate_limiter& limits) {
    {
      std::lock_guard lock{mutex_};
      if (!limiter_registries_.insert(&limits).second) return;
    }
    limits.enable_grant_counting();
    add_watcher(
        [&limits](metric_snapshot& s, covered& c) {
          limits.for_each_stats([&](std::string_view key, const rate_limit_stats& st) { add_limiter(s, c, key, st); });
        },
        &limits.events(), nullptr);
  }

  /// Reads one stand-alone limiter (token_bucket, sliding_window...) at each
  /// scrape, labelled key="<its name>". Turns on its grant counting, as for
  /// a registry. Watching the same limiter again does nothing; another
  /// limiter with the same name throws std::invalid_argument naming it.
  void watch(const limiter& l) {
    {
      std::lock_guard lock{mutex_};
      // name() points into the state copies share: equal pointers, same limiter.
      const auto [it, inserted] = limiter_names_.try_emplace(detail::label_text(l.name()), l.name().data());
      if (!inserted) {
        if (it->second == l.name().data()) return;
        throw std::invalid_argument{"metrics_registry: already watching another limiter named '" + it->first + "'"};
      }
    }
    l.enable_grant_counting();
    auto keep = std::make_shared<const limiter>(l);
    add_watcher([keep](metric_snapshot& s, covered& c) { add_limiter(s, c, keep->name(), keep->stats()); },
                &keep->events(), keep);
  }

  /// Reads the degradation manager's tier and every service's health at
  /// each scrape. One manager per registry (degradation_tier has no labels);
  /// a second one throws std::logic_error.
  void watch(const degradation_manager& manager) {
    auto keep = std::make_shared<const degradation_manager>(manager);
    {
      std::lock_guard lock{mutex_};
      if (watching_degradation_) throw std::logic_error{"metrics_registry: already watching a degradation_manager"};
      watching_degradation_ = true;
    }
    add_watcher(
        [keep](metric_snapshot& s, covered& c) {
          const auto snap = keep->snapshot();
          c.degradation = true;
          s.add("degradation_tier", metric_type::gauge, {}, {}, static_cast<double>(static_cast<int>(snap.current)));
          for (const auto& svc : snap.services)
            s.add("service_health", metric_type::gauge, {}, {{"service", svc.name}}, svc.healthy ? 1.0 : 0.0);
        },
        &keep->events(), keep);
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
    declare_families(s);
    // What to read is copied under the lock; reading runs without it, so a
    // collector that calls back into this registry cannot deadlock.
    std::vector<std::shared_ptr<const collector>> collectors;
    std::vector<std::shared_ptr<const watcher>> watched;
    std::vector<watched_breaker> breakers;
    {
      std::lock_guard lock{mutex_};
      for (const auto& [reg, durations] : breaker_registries_)
        for (const auto& b : reg->all()) adopt_breaker(b, durations, /*from_registry=*/true);
      collectors = collectors_;
      watched = watched_;
      breakers = breakers_;
    }
    covered c;
    c.breakers.reserve(breakers.size());
    for (const auto& collect : collectors) (*collect)(s);
    for (const auto& b : breakers) add_breaker(s, c, b);
    for (const auto& w : watched) (*w)(s, c);
    add_event_metrics(s, c);
    s.write(out, options_.prefix);
  }

  /// The options in force.
  const metrics_options& options() const noexcept { return options_; }

 private:
  // Names whose series came from a watched object: the event-derived series
  // for the same names are left out, so no series appears twice.
  // Hash sets, so that a scrape stays linear in the number of series. Names
  // are kept as they read in the scrape (sanitised), viewing the watched
  // objects' own strings, which live through the scrape.
  struct covered {
    using names = std::unordered_set<std::string_view>;
    names breakers, limiters, bulkheads;
    std::deque<std::string> sanitised;  // the few names that were not valid UTF-8
    bool degradation = false;
    // Adds a name; false when it was there already.
    bool add(names& v, std::string_view n) {
      if (!detail::valid_utf8(n)) n = sanitised.emplace_back(detail::sanitized_utf8(n));
      return v.insert(n).second;
    }
    // Event-derived names are sanitised when counted.
    static bool has(const names& v, std::string_view n) { return v.find(n) != v.end(); }
  };
  using watcher = std::function<void(metric_snapshot&, covered&)>;
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

  void add_watcher(watcher w, event_hub* hub, std::shared_ptr<const void> keep) {
    std::lock_guard lock{mutex_};
    watched_.push_back(std::make_shared<const watcher>(std::move(w)));
    if (keep) keep_alive_.push_back(std::move(keep));
    if (hub != nullptr && !options_.count_global_events) subscribe_locked(*hub);
  }

  struct watched_breaker {
    circuit_breaker breaker;
    std::shared_ptr<duration_histogram> durations;  // null when not recorded
  };

  // Requires mutex_. Breakers named by a registry may be seen again at every
  // scrape; those are matched by identity and never throw.
  void adopt_breaker(const circuit_breaker& b, call_durations durations, bool from_registry = false) const {
    // The common case at every scrape, a registry's breaker seen before: found by its plain name, nothing escaped.
    if (const auto it = breaker_index_.find(std::string_view{b.name()});
        it != breaker_index_.end() && breakers_[it->second].breaker == b)
      return;
    auto key = detail::label_text(b.name());
    if (const auto it = breaker_index_.find(key); it != breaker_index_.end()) {
      if (breakers_[it->second].breaker == b || from_registry) return;
      throw std::invalid_argument{"metrics_registry: already watching another circuit breaker named '" + key + "'"};
    }
    std::shared_ptr<duration_histogram> h;
    if (durations == call_durations::always || (durations == call_durations::when_timed && b.tracks_slow_calls())) {
      h = std::make_shared<duration_histogram>(options_.duration_buckets);
      // The observer keeps the histogram alive: observers stay as long as the breaker.
      b.on_call_recorded([h](duration took, call_status) { h->observe(took); });
    }
    breaker_index_.emplace(std::move(key), breakers_.size());
    breakers_.push_back({b, std::move(h)});
  }

  static void add_breaker(metric_snapshot& s, covered& c, const watched_breaker& w) {
    using enum metric_type;
    const std::string& name = w.breaker.name();
    const auto st = w.breaker.stats();
    c.add(c.breakers, name);
    s.add("circuit_breaker_state", gauge, {}, {{"name", name}}, static_cast<double>(static_cast<int>(st.state)));
    const std::pair<call_status, std::uint64_t> calls[] = {{call_status::success, st.successful},
                                                           {call_status::failure, st.failed},
                                                           {call_status::rejected, st.rejected},
                                                           {call_status::ignored, st.ignored}};
    for (const auto& [status, n] : calls)
      s.add("circuit_breaker_calls_total", counter, {}, {{"name", name}, {"status", to_string(status)}}, static_cast<double>(n));
    s.add("circuit_breaker_slow_calls_total", counter, {}, {{"name", name}}, static_cast<double>(st.slow));
    for (int from = 0; from < 3; ++from)
      for (int to = 0; to < 3; ++to) {
        const auto n = st.transitions[static_cast<std::size_t>(from)][static_cast<std::size_t>(to)];
        if (n == 0) continue;  // appears with its first transition, then only grows
        s.add("circuit_breaker_state_transitions_total", counter, {},
              {{"name", name},
               {"from", to_string(static_cast<circuit_state>(from))},
               {"to", to_string(static_cast<circuit_state>(to))}},
              static_cast<double>(n));
      }
    s.add("circuit_breaker_failure_rate", gauge, {}, {{"name", name}}, st.failure_rate);
    if (w.durations)
      w.durations->collect(s, "circuit_breaker_call_duration_seconds", {}, {{"name", name}});
  }

  static void add_limiter(metric_snapshot& s, covered& c, std::string_view key, const rate_limit_stats& st) {
    using enum metric_type;
    if (!c.add(c.limiters, key)) return;  // already written by a limiter watched earlier
    s.add("rate_limiter_tokens", gauge, {}, {{"key", key}}, st.available);
    s.add("rate_limiter_requests_total", counter, {}, {{"key", key}, {"result", "allowed"}}, static_cast<double>(st.allowed));
    s.add("rate_limiter_requests_total", counter, {}, {{"key", key}, {"result", "rejected"}}, static_cast<double>(st.rejected));
    s.add("rate_limiter_violations_total", counter, {}, {{"key", key}}, static_cast<double>(st.violations));
  }
  static void declare_families(metric_snapshot& s) {
    using enum metric_type;
    s.declare("circuit_breaker_state", gauge, "Circuit breaker state: 0 closed, 1 open, 2 half_open.");
    s.declare("circuit_breaker_calls_total", counter, "Calls seen by a circuit breaker, by outcome.");
    s.declare("circuit_breaker_state_transitions_total", counter, "Circuit breaker state transitions.");
    s.declare("circuit_breaker_call_duration_seconds", histogram, "Duration of calls through a circuit breaker.");
    s.declare("circuit_breaker_failure_rate", gauge, "Failure rate the circuit breaker decides on, 0 to 1: its window's, or failures in a row / fail_max.");
    s.declare("circuit_breaker_slow_calls_total", counter, "Calls slower than the circuit breaker's slow_call_duration.");
    s.declare("bulkhead_rejections_total", counter, "Calls a bulkhead refused because it was full.");
    s.declare("bulkhead_in_flight_calls", gauge, "Calls running inside a bulkhead now.");
    s.declare("bulkhead_waiting_calls", gauge, "Callers waiting for a bulkhead slot now.");
    s.declare("bulkhead_max_concurrent_calls", gauge, "A bulkhead's concurrency limit.");
    s.declare("rate_limiter_tokens", gauge, "Permits a rate limiter could grant now.");
    s.declare("rate_limiter_requests_total", counter, "Requests seen by a rate limiter, by result.");
    s.declare("rate_limiter_violations_total", counter, "Rate limit violations.");
    s.declare("degradation_tier", gauge, "Current degradation tier: 1 full, 2 core, 3 read_only, 4 maintenance.");
    s.declare("service_health", gauge, "Service health as the degradation manager sees it: 1 healthy, 0 unhealthy.");
    s.declare("degradation_tier_changes_total", counter, "Degradation tier changes.");
    s.declare("retry_attempts_total", counter, "Retries scheduled after a failed attempt.");
    s.declare("retry_exhausted_total", counter, "Calls a retry policy gave up on.");
    s.declare("timeouts_total", counter, "Calls abandoned by a timeout policy.");
    s.declare("fallback_activations_total", counter, "Failures replaced by a fallback.");
  }

  void add_event_metrics(metric_snapshot& s, const covered& c) const {
    using enum metric_type;
    const auto& ev = *events_;
    const auto counter_1 = [&](const detail::labeled_counter& lc, std::string_view name, std::string_view label,
                               const covered::names* skip) {
      lc.for_each([&](const std::vector<std::string>& v, std::uint64_t n) {
        if (skip != nullptr && covered::has(*skip, v[0])) return;
        s.add(name, counter, {}, {{label, v[0]}}, static_cast<double>(n));
      });
    };
    counter_1(ev.retry_attempts, "retry_attempts_total", "operation", nullptr);
    counter_1(ev.retry_exhausted, "retry_exhausted_total", "operation", nullptr);
    counter_1(ev.timeouts, "timeouts_total", "operation", nullptr);
    ev.fallbacks.for_each([&](const std::vector<std::string>& v, std::uint64_t n) {
      s.add("fallback_activations_total", counter, {}, {{"operation", v[0]}, {"strategy", v[1]}}, static_cast<double>(n));
    });
    counter_1(ev.rate_violations, "rate_limiter_violations_total", "key", &c.limiters);
    counter_1(ev.bulkhead_rejections, "bulkhead_rejections_total", "name", &c.bulkheads);
    ev.breaker_transitions.for_each([&](const std::vector<std::string>& v, std::uint64_t n) {
      if (covered::has(c.breakers, v[0])) return;
      s.add("circuit_breaker_state_transitions_total", counter, {}, {{"name", v[0]}, {"from", v[1]}, {"to", v[2]}},
            static_cast<double>(n));
    });
    ev.breaker_rejections.for_each([&](const std::vector<std::string>& v, std::uint64_t n) {
      if (covered::has(c.breakers, v[0])) return;
      s.add("circuit_breaker_calls_total", counter, {}, {{"name", v[0]}, {"status", "rejected"}}, static_cast<double>(n));
    });
    ev.tier_changes.for_each([&](const std::vector<std::string>& v, std::uint64_t n) {
      s.add("degradation_tier_changes_total", counter, {}, {{"from", v[0]}, {"to", v[1]}}, static_cast<double>(n));
    });

    std::lock_guard lock{ev.last_mutex};
    for (const auto& [name, state] : ev.breaker_state)
      if (!covered::has(c.breakers, name))
        s.add("circuit_breaker_state", gauge, {}, {{"name", name}}, static_cast<double>(static_cast<int>(state)));
    if (!c.degradation) {
      if (ev.current_tier) s.add("degradation_tier", gauge, {}, {}, static_cast<double>(static_cast<int>(*ev.current_tier)));
      for (const auto& [service, healthy] : ev.service_healthy)
        s.add("service_health", gauge, {}, {{"service", service}}, healthy ? 1.0 : 0.0);
    }
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
  mutable std::mutex mutex_;  // guards the vectors below; render holds it while collecting
  std::vector<std::shared_ptr<const collector>> collectors_;  // shared: render copies the lists, not the functions
  std::vector<std::shared_ptr<const watcher>> watched_;
  std::vector<std::shared_ptr<const void>> keep_alive_;
  std::vector<std::pair<event_hub*, event_hub::subscription>> subscriptions_;
  bool watching_degradation_ = false;
  mutable std::vector<watched_breaker> breakers_;  // grows during render when a watched registry gains breakers
  // Watched names as they read in a label (escaped, sanitised): two objects that would write one series collide here.
  mutable std::unordered_map<std::string, std::size_t, detail::string_hash, std::equal_to<>> breaker_index_;  // -> breakers_
  std::unordered_map<std::string, bulkhead, detail::string_hash, std::equal_to<>> bulkhead_names_;
  std::unordered_map<std::string, const char*, detail::string_hash, std::equal_to<>> limiter_names_;  // -> identity
  std::unordered_set<const rate_limiter*> limiter_registries_;
  std::vector<std::pair<const circuit_breaker_registry*, call_durations>> breaker_registries_;
};

}  // namespace v1
}  // namespace resilience
