// resilience/metric_snapshot.hpp: what a policy needs to declare and write
// its metric series: families, the snapshot a scrape fills (and writes in the
// text format), histograms, and the watch hook. The registry that subscribes
// to events and scrapes watched objects is metrics.hpp, which names no
// policy: each policy declares its families and writes its series next to
// its code.
//
//   inline constexpr resilience::metric_family kill_switch_rejections{
//       "kill_switch_rejections_total", resilience::metric_type::counter, "Calls a kill switch refused."};
//   inline const resilience::metric_families kill_switch_families{kill_switch_rejections};
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "clock.hpp"
#include "detail/text_escape.hpp"
#include "events.hpp"

namespace resilience {
inline namespace v1 {

class metric_snapshot;

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

/// A metric family: name (without the registry's prefix), type and help.
/// Declare one `inline constexpr` object per family next to the code that
/// writes it, and register it with metric_families.
struct metric_family {
  std::string_view name;
  metric_type type;
  std::string_view help;
  /// Families are written by rank, then in registration order (the library's use 1 to 99).
  int rank = 1000;
};

namespace detail {
struct family_list {
  std::mutex mutex;
  std::vector<const metric_family*> families;
};
inline family_list& known_families() {
  static family_list list;
  return list;
}
}  // namespace detail

/// Registers families so that every metrics_registry writes their HELP and
/// TYPE lines, even before a sample exists. Define one per header:
///   inline const resilience::metric_families kill_switch_families{kill_switch_rejections};
struct metric_families {
  template <class... F>
  explicit metric_families(const F&... families) {
    auto& known = detail::known_families();
    std::lock_guard lock{known.mutex};
    (known.families.push_back(&families), ...);
  }
};

/// The registered families, by rank then registration order.
inline std::vector<const metric_family*> registered_metric_families() {
  auto& known = detail::known_families();
  std::vector<const metric_family*> out;
  {
    std::lock_guard lock{known.mutex};
    for (const metric_family* f : known.families)
      if (std::find(out.begin(), out.end(), f) == out.end()) out.push_back(f);
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const metric_family* a, const metric_family* b) { return a->rank < b->rank; });
  return out;
}

/// The samples of one scrape, grouped into families. Collectors add to it;
/// the registry writes it. Names given here have no prefix: the registry adds
/// "<prefix>_". A series already in the snapshot is not added again (the
/// first wins), so a scrape never repeats one.
class metric_snapshot {
 public:
  /// Declares a family (idempotent) so that its HELP and TYPE lines appear even without samples.
  void declare(std::string_view name, metric_type type, std::string_view help) { family_for(name, type, help); }
  /// Declares a family.
  void declare(const metric_family& f) { family_for(f.name, f.type, f.help); }

  /// Adds one counter or gauge sample.
  void add(std::string_view name, metric_type type, std::string_view help, std::initializer_list<metric_label> labels,
           double value) {
    add(name, type, help, std::span<const metric_label>{labels.begin(), labels.size()}, value);
  }
  /// Adds one counter or gauge sample, labels from an array.
  void add(std::string_view name, metric_type type, std::string_view help, std::span<const metric_label> labels,
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
    check_labels({labels.begin(), labels.size()});
    auto& f = family_for(name, metric_type::histogram, help);
    const auto line = [&](std::string_view suffix, std::string_view le, double value) {
      const std::size_t start = f.body.size();
      f.body += suffix;
      append_labels(f.body, {labels.begin(), labels.size()}, le);
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

  /// Marks `source` of `scope` as written by a watched object in this
  /// scrape ("circuit_breaker", "erp_api"): event-derived series of that
  /// scope and source are left out. False when it was marked already (the
  /// first watched object wins). An empty source marks the whole scope.
  bool cover(std::string_view scope, std::string_view source) {
    std::string key{scope};
    key += '\0';
    if (detail::valid_utf8(source)) key += source;
    else key += detail::sanitized_utf8(source);
    return covered_.insert(std::move(key)).second;
  }
  /// True when cover(scope, source) or cover(scope, "") was called in this scrape.
  bool covered(std::string_view scope, std::string_view source) const {
    std::string key{scope};
    key += '\0';
    if (covered_.count(key) != 0) return true;
    if (detail::valid_utf8(source)) key += source;
    else key += detail::sanitized_utf8(source);
    return covered_.count(key) != 0;
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
        t[i] = {static_cast<std::uint32_t>(k + 1),
                static_cast<std::uint32_t>(static_cast<std::uint64_t>(lines[k].hash) >> 32)};
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
    if (!detail::valid_metric_name(name))
      throw std::invalid_argument{"metrics: invalid metric name " + std::string{name}};
    auto& f = families_.emplace_back();
    f.name = name;
    f.type = type;
    f.help = help;
    return f;
  }

  static void check_labels(std::span<const metric_label> labels) {
    for (const auto& l : labels)
      if (!detail::valid_label_name(l.name))
        throw std::invalid_argument{"metrics: invalid label name " + std::string{l.name}};
  }

  // Appends "{a=\"x\",le=\"1\"}", or nothing without labels; names checked already.
  static void append_labels(std::string& out, std::span<const metric_label> labels, std::string_view le) {
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

  std::deque<family> families_;              // in declaration order: the output is stable between scrapes
  std::unordered_set<std::string> covered_;  // "scope\0source"
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
    for (std::size_t i = 0; i < bounds_.size(); ++i)
      cumulative[i] = running += counts_[i].load(std::memory_order_relaxed);
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

/// What a policy's watch_metrics() hook sets up when a metrics_registry
/// watches it (see metrics.hpp for the customization points).
class metric_watch {
 public:
  /// Reads the object at each scrape. Collectors run without the registry's lock.
  using collector = std::function<void(metric_snapshot&)>;
  /// Claims a name (as it reads in a label) in a scope for one object:
  /// true the first time, false when `id` holds it already; another object
  /// with that name throws std::invalid_argument ("already watching another
  /// <scope> named '<name>'") unless `quiet`, where it is false too.
  using claim_fn = std::function<bool(std::string_view scope, std::string_view name, const void* id, bool quiet)>;

  metric_watch(const std::vector<double>& duration_buckets, claim_fn claim)
      : buckets_{duration_buckets}, claim_{std::move(claim)} {}

  /// The registry's histogram buckets (metrics_options::duration_buckets).
  const std::vector<double>& duration_buckets() const noexcept { return buckets_; }
  /// See claim_fn; the function stays valid as long as the registry (copy it into a collector).
  bool claim(std::string_view scope, std::string_view name, const void* id, bool quiet = false) const {
    return claim_(scope, name, id, quiet);
  }
  /// The claim function, for a collector that claims names at scrape time.
  const claim_fn& claimer() const noexcept { return claim_; }
  /// Adds what is read at each scrape.
  void collect(collector fn) { collect_ = std::move(fn); }
  /// Counts the events of this hub (when the registry does not count global_events()).
  void count_events(event_hub& hub) { hub_ = &hub; }
  /// Keeps something alive as long as the registry (a copy of the watched handle).
  void keep(std::shared_ptr<const void> p) { keep_ = std::move(p); }
  /// Where its series go in a family: collectors of a lower rank run first
  /// (then in watch order). Default 100; circuit breakers use 0 and 1.
  void rank(int r) noexcept { rank_ = r; }

  const collector& collector_fn() const noexcept { return collect_; }
  event_hub* hub() const noexcept { return hub_; }
  const std::shared_ptr<const void>& kept() const noexcept { return keep_; }
  int rank() const noexcept { return rank_; }

 private:
  const std::vector<double>& buckets_;
  claim_fn claim_;
  collector collect_;
  event_hub* hub_ = nullptr;
  std::shared_ptr<const void> keep_;
  int rank_ = 100;
};

}  // namespace v1
}  // namespace resilience
