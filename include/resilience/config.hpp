// resilience/config.hpp: named policy instances from a JSON file, merged over
// code defaults (resilience4j's application.yml instances), checked all at
// once, and reloaded at run time in place. Optional: it needs nlohmann-json
// (Debian nlohmann-json3-dev); no other header includes it. Each reload is
// an event (config_reloaded_event) and a metric (config_reloads_total{result}).
//
//   resilience::config_defaults defaults;                        // code defaults, per section and per name
//   auto cfg = resilience::config::load("resilience.json", defaults);  // throws config_error listing every problem
//   cfg.apply();             // limiters and breakers of the global registries, changed in place
//   resilience::retry erp_retry{cfg.retry("erp_api")};            // values: read when a policy is built
//
// The file (every section and key optional; unknown keys are errors):
//
//   { "breakers":    { "<name>": { "fail_max": 5, "break_duration": "60s", ... } },
//     "limiters":    { "<key>":  { "requests_per_second": 10, "burst_size": 20, "algorithm": "token_bucket",
//                                  "max_partitions": 10000 } },
//     "retries":     { "<name>": { "max_retries": 3, "base_delay": "1s", "strategy": "exponential", ... } },
//     "timeouts":    { "<name>": { "limit": "10s", "mode": "automatic" } },
//     "bulkheads":   { "<name>": { "max_concurrent_calls": 25, "max_wait": "0s" } },
//     "degradation": { "recover_after_reports": 3, "recover_after_time": "0s",
//                      "services": { "<name>": { "tier": "read_only", "slow_threshold": "10s" } } },
//     "presets":     { "production": { "factor_lookup": { "max_retries": 3, "timeout": "5s", ... } } } }
//
// A duration is a number of seconds (0.5) or a string with a unit ("500ms",
// "2.5s", "1m", "1h"; also ns, us). Which failures a retry or breaker
// handles (`handle`, `ignore`) is code, not configuration: it stays in
// config_defaults.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "bulkhead.hpp"
#include "circuit_breaker.hpp"
#include "clock.hpp"
#include "degradation.hpp"
#include "events.hpp"
#include "metric_snapshot.hpp"
#include "presets.hpp"
#include "rate_limit.hpp"
#include "retry.hpp"
#include "timeout.hpp"

namespace resilience {
inline namespace v1 {

/// One problem of a configuration: where (a JSON path) and which rule.
struct config_issue {
  std::string path;     ///< e.g. "limiters.erp_api.requests_per_second" ("" for the document itself)
  std::string message;  ///< e.g. "must be a finite number > 0, got -1"
};

/// A configuration was rejected and nothing of it was applied. what() lists
/// every problem, one "path: message" per line.
class config_error : public std::invalid_argument {
 public:
  explicit config_error(std::vector<config_issue> issues)
      : std::invalid_argument{text(issues)}, issues_{std::move(issues)} {}
  /// Every problem found, in document order.
  const std::vector<config_issue>& issues() const noexcept { return issues_; }

 private:
  static std::string text(const std::vector<config_issue>& issues) {
    std::string s =
        "invalid configuration (" + std::to_string(issues.size()) + (issues.size() == 1 ? " problem)" : " problems)");
    for (const auto& i : issues) s += "\n  " + (i.path.empty() ? std::string{} : i.path + ": ") + i.message;
    return s;
  }
  std::vector<config_issue> issues_;
};

/// Named options, looked up by name.
template <class Options>
using named_options = std::map<std::string, Options, std::less<>>;

/// The code defaults a file is merged over. A named instance starts from its
/// entry in the per-name map if there is one, else from the section's base
/// options; the file's keys then replace single fields. Instances named only
/// here exist even when the file does not mention them.
struct config_defaults {
  circuit_breaker_options breaker{};  ///< base of every breaker (its clock is the clock of breakers apply() creates)
  limiter_options limiter{};          ///< base of every limiter key
  retry_options retry{};              ///< base of every retry (handle, ignore and on_retry stay code)
  timeout_options timeout{};          ///< base of every timeout
  bulkhead_options bulkhead{};        ///< base of every bulkhead
  degradation_options degradation{};  ///< the degradation manager's options
  named_options<circuit_breaker_options> breakers{};  ///< per-name code defaults
  named_options<limiter_options> limiters{};          ///< per-key code defaults
  named_options<retry_options> retries{};             ///< per-name code defaults
  named_options<timeout_options> timeouts{};          ///< per-name code defaults
  named_options<bulkhead_options> bulkheads{};        ///< per-name code defaults
};

/// A degradation service as configured: the tier its loss implies and when a response is too slow.
struct degradation_service {
  tier implies = tier::read_only;                    ///< the tier its loss implies ("tier" in the file; required)
  duration slow_threshold = default_slow_threshold;  ///< a slower response counts as unhealthy; default 10 s
};

/// The live objects config::apply changes (null: the process-wide one).
struct config_targets {
  rate_limiter* limiters = nullptr;              ///< default: global_rate_limiter()
  circuit_breaker_registry* breakers = nullptr;  ///< default: global_circuit_breakers()
  degradation_manager* degradation =
      nullptr;  ///< default: global_degradation_manager(), used only when the file names services
};

/// Reloads of a configuration file, by result (config_reloads_total{result}):
/// counted from config_reloaded_event by any metrics_registry.
inline constexpr metric_family config_reloads_family{
    "config_reloads_total", metric_type::counter,
    "Configuration reloads, by result: applied, or rejected (nothing applied).", 21};
inline const metric_families config_metric_families{config_reloads_family};

namespace detail {
inline constexpr event_metric config_reloaded_metrics[] = {{&config_reloads_family, {{{"result", "result"}}}}};
}  // namespace detail

/// A config_loader reloaded its file. Source: the file (logged as "file").
/// Fields: result ("applied" or "rejected"), problems (0 when applied) and,
/// when rejected, error (config_error::what(): every problem). Info when
/// applied, an error when rejected.
inline constexpr event_kind config_reloaded_event{
    "config_reloaded", log_level::info, {.source_key = "file", .metrics = detail::config_reloaded_metrics}};

namespace detail {

using json = nlohmann::json;

// Collects issues while one document is read; nothing throws on the way.
class config_reader {
 public:
  std::vector<config_issue> issues;

  void issue(std::string path, std::string message) { issues.push_back({std::move(path), std::move(message)}); }
  void type_issue(const std::string& path, std::string_view expected, const json& v) {
    issue(path, "must be " + std::string{expected} + ", got " + v.dump());
  }

  // Calls fn(key, value, path) for every member of an object, or reports a non-object.
  template <class Fn>
  bool each(const json& v, const std::string& path, Fn&& fn) {
    if (!v.is_object()) {
      type_issue(path, "an object", v);
      return false;
    }
    for (const auto& [k, child] : v.items()) fn(k, child, join(path, k));
    return true;
  }
  static std::string join(const std::string& path, std::string_view key) {
    return path.empty() ? std::string{key} : path + "." + std::string{key};
  }
  void unknown_key(const std::string& path, std::initializer_list<std::string_view> known) {
    std::string list;
    for (auto k : known) list += (list.empty() ? "" : ", ") + std::string{k};
    issue(path, "unknown key (expected one of " + list + ")");
  }

  void read(const json& v, const std::string& p, bool& out) {
    if (v.is_boolean()) out = v.get<bool>();
    else type_issue(p, "true or false", v);
  }
  void read(const json& v, const std::string& p, double& out) {
    if (v.is_number()) out = v.get<double>();
    else type_issue(p, "a number", v);
  }
  template <class I>
  requires std::is_integral_v<I>
  void read(const json& v, const std::string& p, I& out) {
    using L = std::numeric_limits<I>;
    const bool fits = v.is_number_unsigned() ? v.get<std::uint64_t>() <= static_cast<std::uint64_t>(L::max())
                      : v.is_number_integer()
                          ? v.get<std::int64_t>() >= static_cast<std::int64_t>(L::min()) &&
                                (v.get<std::int64_t>() < 0 || static_cast<std::uint64_t>(v.get<std::int64_t>()) <=
                                                                  static_cast<std::uint64_t>(L::max()))
                          : false;
    if (fits) {
      out = v.is_number_unsigned() ? static_cast<I>(v.get<std::uint64_t>()) : static_cast<I>(v.get<std::int64_t>());
      return;
    }
    if constexpr (std::is_signed_v<I>)
      type_issue(p, "an integer between " + std::to_string(L::min()) + " and " + std::to_string(L::max()), v);
    else type_issue(p, "an integer between 0 and " + std::to_string(L::max()), v);
  }
  void read(const json& v, const std::string& p, duration& out) {
    constexpr std::string_view expected = "a duration (seconds, or a string such as \"500ms\", \"2s\", \"1m\")";
    long double ns = 0;
    if (v.is_number()) {
      ns = v.get<long double>() * 1e9L;
    } else if (v.is_string()) {
      const auto s = v.get<std::string>();
      char* end = nullptr;
      const long double n = std::strtold(s.c_str(), &end);
      const std::string_view unit{end, static_cast<std::size_t>(s.c_str() + s.size() - end)};
      static constexpr std::pair<std::string_view, long double> units[] = {
          {"ns", 1.0L}, {"us", 1e3L}, {"ms", 1e6L}, {"s", 1e9L}, {"m", 60e9L}, {"min", 60e9L}, {"h", 3600e9L}};
      const auto* u = std::find_if(std::begin(units), std::end(units), [&](const auto& e) { return e.first == unit; });
      if (end == s.c_str() || u == std::end(units) || std::isspace(static_cast<unsigned char>(s.front()))) {
        type_issue(p, expected, v);
        return;
      }
      ns = n * u->second;
    } else {
      type_issue(p, expected, v);
      return;
    }
    constexpr auto bound = static_cast<long double>(max_duration.count());
    if (!(ns >= -bound && ns <= bound)) {
      issue(p, "must be within 100 years (resilience::max_duration), got " + v.dump());
      return;
    }
    out = duration{static_cast<duration::rep>(std::llround(ns))};
  }
  template <class E>
  void read_enum(const json& v, const std::string& p, E& out,
                 std::initializer_list<std::pair<std::string_view, E>> names) {
    if (v.is_string()) {
      for (const auto& [name, value] : names)
        if (v.get<std::string>() == name) {
          out = value;
          return;
        }
    }
    std::string list;
    for (const auto& [name, value] : names) list += (list.empty() ? "" : ", ") + std::string{name};
    type_issue(p, "one of " + list, v);
  }
  void read(const json& v, const std::string& p, rate_limit_algorithm& out) {
    using enum rate_limit_algorithm;
    read_enum(v, p, out,
              {{"token_bucket", token_bucket},
               {"leaky_bucket", leaky_bucket},
               {"fixed_window", fixed_window},
               {"sliding_window", sliding_window}});
  }
  void read(const json& v, const std::string& p, breaker_window& out) {
    using enum breaker_window;
    read_enum(v, p, out, {{"consecutive", consecutive}, {"count_based", count_based}, {"time_based", time_based}});
  }
  void read(const json& v, const std::string& p, backoff_strategy& out) {
    using enum backoff_strategy;
    read_enum(v, p, out,
              {{"exponential", exponential},
               {"linear", linear},
               {"constant", constant},
               {"fibonacci", fibonacci},
               {"decorrelated_jitter", decorrelated_jitter}});
  }
  void read(const json& v, const std::string& p, jitter_mode& out) {
    using enum jitter_mode;
    read_enum(v, p, out, {{"none", none}, {"full", full}, {"equal", equal}});
  }
  void read(const json& v, const std::string& p, timeout_mode& out) {
    using enum timeout_mode;
    read_enum(v, p, out, {{"automatic", automatic}, {"cooperative", cooperative}, {"detached", detached}});
  }
  void read(const json& v, const std::string& p, tier& out) {
    using enum tier;
    read_enum(v, p, out, {{"full", full}, {"core", core}, {"read_only", read_only}, {"maintenance", maintenance}});
  }
  void read(const json& v, const std::string& p, std::optional<tier>& out) {
    if (v.is_null()) {
      out.reset();
      return;
    }
    tier t = tier::full;
    const auto before = issues.size();
    read(v, p, t);
    if (issues.size() == before) out = t;
  }
};

// One configurable field of an options struct: its key in the file, how to
// read it, and how to put back the code default (to look for more problems
// after the policy's own validation rejected it).
template <class O>
struct config_field {
  std::string_view key;
  void (*read)(config_reader&, const json&, const std::string&, O&);
  void (*reset)(O&, const O&);
};

template <class O, auto M>
constexpr config_field<O> field(std::string_view key) {
  return {key, [](config_reader& r, const json& v, const std::string& p, O& o) { r.read(v, p, o.*M); },
          [](O& o, const O& base) { o.*M = base.*M; }};
}

template <class O, std::size_t N>
std::string keys_text(const config_field<O> (&fields)[N]) {
  std::string list;
  for (const auto& f : fields) list += (list.empty() ? "" : ", ") + std::string{f.key};
  return list;
}

// Reads the members of `v` into `o`; unknown keys are issues. False when a
// value could not be read (then `o` is not what the file says, and the
// policy's rules are not checked on it).
template <class O, std::size_t N>
bool read_fields(config_reader& r, const json& v, const std::string& path, O& o, const config_field<O> (&fields)[N]) {
  bool read_all = true;
  const bool object = r.each(v, path, [&](const std::string& key, const json& child, const std::string& p) {
    for (const auto& f : fields)
      if (f.key == key) {
        const auto before = r.issues.size();
        f.read(r, child, p, o);
        read_all = read_all && r.issues.size() == before;
        return;
      }
    r.issue(p, "unknown key (expected one of " + keys_text(fields) + ")");
  });
  return object && read_all;
}

// Runs a policy's own validation over `o` and turns each std::invalid_argument
// ("who: field rule") into an issue at path.field, with the file's value.
// After a problem, the field gets its code default back and the validation
// runs again, so every bad field is reported, not only the first.
template <class O, std::size_t N, class Validate>
void check_fields(config_reader& r, const json& v, const std::string& path, O o, const O& base,
                  const config_field<O> (&fields)[N], Validate&& validate,
                  std::initializer_list<std::pair<std::string_view, std::string_view>> renames = {}) {
  std::vector<const config_field<O>*> reported;
  for (std::size_t round = 0; round <= N; ++round) {
    try {
      validate(o);
      return;
    } catch (const std::invalid_argument& e) {
      std::string_view text = e.what();
      if (const auto colon = text.find(": "); colon != std::string_view::npos) text.remove_prefix(colon + 2);
      // "slow_threshold of 'x' must be > 0": the instance is in the path already.
      const auto space = text.find(' ');
      std::string_view name = text.substr(0, space);
      std::string_view rule = space == std::string_view::npos ? std::string_view{} : text.substr(space + 1);
      if (rule.starts_with("of '")) {
        if (const auto end = rule.find("' "); end != std::string_view::npos) rule.remove_prefix(end + 2);
      }
      for (const auto& [from, to] : renames)
        if (name == from) name = to;
      const config_field<O>* f = nullptr;
      for (const auto& candidate : fields)
        if (candidate.key == name) f = &candidate;
      // A field whose code default breaks the same rule (minimum_calls over a
      // smaller window_size) is reported once.
      if (!f || std::find(reported.begin(), reported.end(), f) != reported.end()) {
        if (!f) r.issue(path, std::string{text});
        return;
      }
      reported.push_back(f);
      std::string message{rule};
      if (v.is_object() && v.contains(name)) message += ", got " + v.at(std::string{name}).dump();
      r.issue(config_reader::join(path, name), std::move(message));
      f->reset(o, base);
    }
  }
}

inline constexpr config_field<circuit_breaker_options> breaker_fields[] = {
    field<circuit_breaker_options, &circuit_breaker_options::window>("window"),
    field<circuit_breaker_options, &circuit_breaker_options::fail_max>("fail_max"),
    field<circuit_breaker_options, &circuit_breaker_options::break_duration>("break_duration"),
    field<circuit_breaker_options, &circuit_breaker_options::window_size>("window_size"),
    field<circuit_breaker_options, &circuit_breaker_options::window_duration>("window_duration"),
    field<circuit_breaker_options, &circuit_breaker_options::window_buckets>("window_buckets"),
    field<circuit_breaker_options, &circuit_breaker_options::minimum_calls>("minimum_calls"),
    field<circuit_breaker_options, &circuit_breaker_options::failure_rate_threshold>("failure_rate_threshold"),
    field<circuit_breaker_options, &circuit_breaker_options::slow_call_duration>("slow_call_duration"),
    field<circuit_breaker_options, &circuit_breaker_options::slow_call_rate_threshold>("slow_call_rate_threshold"),
    field<circuit_breaker_options, &circuit_breaker_options::half_open_max_calls>("half_open_max_calls"),
    field<circuit_breaker_options, &circuit_breaker_options::success_threshold>("success_threshold"),
    field<circuit_breaker_options, &circuit_breaker_options::max_wait_in_half_open>("max_wait_in_half_open"),
    field<circuit_breaker_options, &circuit_breaker_options::break_duration_multiplier>("break_duration_multiplier"),
    field<circuit_breaker_options, &circuit_breaker_options::max_break_duration>("max_break_duration"),
};

inline constexpr config_field<limiter_options> limiter_fields[] = {
    field<limiter_options, &limiter_options::requests_per_second>("requests_per_second"),
    field<limiter_options, &limiter_options::burst_size>("burst_size"),
    field<limiter_options, &limiter_options::algorithm>("algorithm"),
    field<limiter_options, &limiter_options::max_partitions>("max_partitions"),
    field<limiter_options, &limiter_options::count_grants>("count_grants"),
};

inline constexpr config_field<retry_options> retry_fields[] = {
    field<retry_options, &retry_options::max_retries>("max_retries"),
    field<retry_options, &retry_options::base_delay>("base_delay"),
    field<retry_options, &retry_options::strategy>("strategy"),
    field<retry_options, &retry_options::multiplier>("multiplier"),
    field<retry_options, &retry_options::max_delay>("max_delay"),
    field<retry_options, &retry_options::jitter>("jitter"),
};

inline constexpr config_field<timeout_options> timeout_fields[] = {
    field<timeout_options, &timeout_options::limit>("limit"),
    field<timeout_options, &timeout_options::mode>("mode"),
};

inline constexpr config_field<bulkhead_options> bulkhead_fields[] = {
    field<bulkhead_options, &bulkhead_options::max_concurrent_calls>("max_concurrent_calls"),
    field<bulkhead_options, &bulkhead_options::max_wait>("max_wait"),
};

inline constexpr config_field<degradation_options> degradation_fields[] = {
    field<degradation_options, &degradation_options::register_defaults>("register_defaults"),
    field<degradation_options, &degradation_options::recover_after_reports>("recover_after_reports"),
    field<degradation_options, &degradation_options::recover_after_time>("recover_after_time"),
    field<degradation_options, &degradation_options::unknown_service_tier>("unknown_service_tier"),
};

inline constexpr config_field<degradation_service> service_fields[] = {
    field<degradation_service, &degradation_service::implies>("tier"),
    field<degradation_service, &degradation_service::slow_threshold>("slow_threshold"),
};

inline constexpr config_field<presets::settings> preset_fields[] = {
    field<presets::settings, &presets::settings::max_retries>("max_retries"),
    field<presets::settings, &presets::settings::base_delay>("base_delay"),
    field<presets::settings, &presets::settings::jitter>("jitter"),
    field<presets::settings, &presets::settings::timeout>("timeout"),
    field<presets::settings, &presets::settings::requests_per_second>("requests_per_second"),
    field<presets::settings, &presets::settings::burst_size>("burst_size"),
    field<presets::settings, &presets::settings::fail_max>("fail_max"),
    field<presets::settings, &presets::settings::break_duration>("break_duration"),
};

}  // namespace detail

/// A validated configuration: the named options of every policy, merged
/// over the code defaults. A value; build policies from it, or apply() it to
/// the live registries.
class config {
 public:
  /// The code defaults alone (no file).
  explicit config(config_defaults defaults = {}) : d_{std::move(defaults)} {
    for (const auto& [name, o] : d_.breakers) breakers_[name] = named(o, name);
    for (const auto& [name, o] : d_.limiters) limiters_[name] = o;
    for (const auto& [name, o] : d_.retries) retries_[name] = o;
    for (const auto& [name, o] : d_.timeouts) timeouts_[name] = named(o, name);
    for (const auto& [name, o] : d_.bulkheads) bulkheads_[name] = named(o, name);
    degradation_ = d_.degradation;
  }

  /// Reads a JSON document over `defaults`. Throws config_error listing
  /// every problem: bad JSON, unknown keys, wrong types, values the
  /// policies reject.
  static config from_json(const nlohmann::json& doc, config_defaults defaults = {}) {
    config c{std::move(defaults)};
    detail::config_reader r;
    c.read(r, doc);
    if (!r.issues.empty()) throw config_error{std::move(r.issues)};
    return c;
  }
  /// Parses JSON text; see from_json.
  static config parse(std::string_view text, config_defaults defaults = {}) {
    nlohmann::json doc;
    try {
      doc = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw config_error{{{"", std::string{"not valid JSON: "} + e.what()}}};
    }
    return from_json(doc, std::move(defaults));
  }
  /// Reads a JSON file; see from_json. A file that cannot be read is a config_error too.
  static config load(const std::filesystem::path& file, config_defaults defaults = {}) {
    std::ifstream in{file, std::ios::binary};
    std::ostringstream text;
    if (in) text << in.rdbuf();
    if (!in) throw config_error{{{"", "cannot read " + file.string()}}};
    return parse(text.str(), std::move(defaults));
  }

  /// The options of breaker `name`: its configured options, or the defaults with the name set.
  circuit_breaker_options breaker(std::string_view name) const {
    return find(breakers_, name, named(d_.breaker, name));
  }
  /// The options of limiter key `key`.
  limiter_options limiter(std::string_view key) const { return find(limiters_, key, d_.limiter); }
  /// The options of retry `name` (handle, ignore and on_retry from the code defaults).
  retry_options retry(std::string_view name) const { return find(retries_, name, d_.retry); }
  /// The options of timeout `name` (named `name` when the defaults give no name).
  timeout_options timeout(std::string_view name) const { return find(timeouts_, name, named(d_.timeout, name)); }
  /// The options of bulkhead `name`.
  bulkhead_options bulkhead(std::string_view name) const { return find(bulkheads_, name, named(d_.bulkhead, name)); }
  /// The degradation manager's options (read when a manager is built: `degradation_manager m{cfg.degradation()}`).
  const degradation_options& degradation() const noexcept { return degradation_; }
  /// The degradation services of the file, by name.
  const std::map<std::string, degradation_service, std::less<>>& services() const noexcept { return services_; }
  /// The preset of `op` in `env`: presets::get's, with the file's overrides.
  presets::settings preset(operation_type op, environment env) const {
    auto s = presets::get(op, env);
    if (auto it = presets_.find(key_of(op, env)); it != presets_.end()) {
      s = it->second;
      s.name = presets::dependency_name(op);
    }
    return s;
  }

  /// Every configured breaker, by name.
  const named_options<circuit_breaker_options>& breakers() const noexcept { return breakers_; }
  /// Every configured limiter key.
  const named_options<limiter_options>& limiters() const noexcept { return limiters_; }
  /// Every configured retry.
  const named_options<retry_options>& retries() const noexcept { return retries_; }
  /// Every configured timeout.
  const named_options<timeout_options>& timeouts() const noexcept { return timeouts_; }
  /// Every configured bulkhead.
  const named_options<bulkhead_options>& bulkheads() const noexcept { return bulkheads_; }

  /// Applies the live parts to `targets`: each limiter key is configured
  /// (a known key in place, keeping its permits: rate_limiter::configure),
  /// each breaker reconfigured in place (keeping its state and counts:
  /// circuit_breaker::reconfigure) or created, each degradation service
  /// registered (a known one keeps its health). Checks first that every
  /// change can be made (a breaker's window cannot change under it) and
  /// throws config_error, changing nothing, when one cannot. Retries,
  /// timeouts, bulkheads, presets and the manager's options are values:
  /// they reach policies built from this config afterwards.
  void apply(const config_targets& targets = {}) const {
    auto& limits = targets.limiters ? *targets.limiters : global_rate_limiter();
    auto& breakers = targets.breakers ? *targets.breakers : global_circuit_breakers();
    std::vector<config_issue> issues;
    for (const auto& [name, o] : breakers_)
      if (const auto live = breakers.find(name))
        if (const auto c = detail::reconfigure_check(live->options(), o))
          issues.push_back({"breakers." + name + "." + c->field, c->rule});
    if (!issues.empty()) throw config_error{std::move(issues)};
    for (const auto& [key, o] : limiters_) limits.configure(key, o);
    for (const auto& [name, o] : breakers_) {
      if (const auto live = breakers.find(name)) live->reconfigure(o);
      else (void)breakers.get_or_create(name, o);
    }
    if (!services_.empty()) {
      auto& manager = targets.degradation ? *targets.degradation : global_degradation_manager();
      for (const auto& [name, s] : services_) manager.register_service(name, s.implies, s.slow_threshold);
    }
  }

 private:
  template <class O>
  static O named(O o, std::string_view name) {
    if (o.name.empty()) o.name = std::string{name};
    return o;
  }
  template <class O>
  static O find(const named_options<O>& m, std::string_view name, const O& fallback) {
    if (auto it = m.find(name); it != m.end()) return it->second;
    return fallback;
  }
  static std::string key_of(operation_type op, environment env) {
    return std::string{to_string(env)} + "." + std::string{to_string(op)};
  }

  // Reads a named section: every member of `v` is an instance, read over its code default.
  template <class O, std::size_t N, class Base, class Validate>
  void section(detail::config_reader& r, const nlohmann::json& v, const std::string& path, named_options<O>& out,
               const detail::config_field<O> (&fields)[N], Base&& base_of, Validate&& validate) {
    r.each(v, path, [&](const std::string& name, const nlohmann::json& child, const std::string& p) {
      const O base = base_of(name);
      O o = base;
      if (detail::read_fields(r, child, p, o, fields)) detail::check_fields(r, child, p, o, base, fields, validate);
      out[name] = std::move(o);
    });
  }

  void read(detail::config_reader& r, const nlohmann::json& doc) {
    r.each(doc, "", [&](const std::string& key, const nlohmann::json& v, const std::string& p) {
      if (key == "breakers")
        section(
            r, v, p, breakers_, detail::breaker_fields,
            [&](const std::string& n) { return named(find(d_.breakers, n, d_.breaker), n); },
            [](const circuit_breaker_options& o) { detail::validate(o); });
      else if (key == "limiters")
        section(
            r, v, p, limiters_, detail::limiter_fields,
            [&](const std::string& n) { return find(d_.limiters, n, d_.limiter); },
            [](const limiter_options& o) { detail::validate(o, "limiter"); });
      else if (key == "retries")
        section(
            r, v, p, retries_, detail::retry_fields,
            [&](const std::string& n) { return find(d_.retries, n, d_.retry); },
            [](const retry_options& o) { (void)resilience::retry{o}; });
      else if (key == "timeouts")
        section(
            r, v, p, timeouts_, detail::timeout_fields,
            [&](const std::string& n) { return named(find(d_.timeouts, n, d_.timeout), n); },
            [](const timeout_options& o) { (void)resilience::timeout{o}; });
      else if (key == "bulkheads")
        section(
            r, v, p, bulkheads_, detail::bulkhead_fields,
            [&](const std::string& n) { return named(find(d_.bulkheads, n, d_.bulkhead), n); },
            [](const bulkhead_options& o) { (void)resilience::bulkhead{o}; });
      else if (key == "degradation") read_degradation(r, v, p);
      else if (key == "presets") read_presets(r, v, p);
      else r.unknown_key(p, {"breakers", "limiters", "retries", "timeouts", "bulkheads", "degradation", "presets"});
    });
  }

  void read_degradation(detail::config_reader& r, const nlohmann::json& v, const std::string& path) {
    nlohmann::json options = nlohmann::json::object();
    r.each(v, path, [&](const std::string& key, const nlohmann::json& child, const std::string& p) {
      if (key != "services") {
        options[key] = child;
        return;
      }
      r.each(child, p, [&](const std::string& name, const nlohmann::json& s, const std::string& sp) {
        degradation_service service;
        bool read_all = detail::read_fields(r, s, sp, service, detail::service_fields);
        if (s.is_object() && !s.contains("tier")) {
          r.issue(sp + ".tier", "is required (one of full, core, read_only, maintenance)");
          read_all = false;
        }
        if (read_all)
          detail::check_fields(r, s, sp, service, degradation_service{}, detail::service_fields,
                               [&](const degradation_service& d) {
                                 degradation_manager scratch{degradation_options{.register_defaults = false}};
                                 scratch.register_service(name, d.implies, d.slow_threshold);
                               });
        services_[name] = service;
      });
    });
    degradation_options o = d_.degradation;
    if (detail::read_fields(r, options, path, o, detail::degradation_fields))
      detail::check_fields(r, options, path, o, d_.degradation, detail::degradation_fields,
                           [](const degradation_options& d) {
                             auto copy = d;
                             copy.register_defaults = false;
                             (void)degradation_manager{std::move(copy)};
                           });
    degradation_ = std::move(o);
  }

  void read_presets(detail::config_reader& r, const nlohmann::json& v, const std::string& path) {
    r.each(v, path, [&](const std::string& env_name, const nlohmann::json& ops, const std::string& ep) {
      std::optional<environment> env;
      for (auto e : {environment::development, environment::production})
        if (to_string(e) == env_name) env = e;
      if (!env) {
        r.unknown_key(ep, {"development", "production"});
        return;
      }
      r.each(ops, ep, [&](const std::string& op_name, const nlohmann::json& s, const std::string& op_path) {
        std::optional<operation_type> op;
        for (auto o : presets::operation_types)
          if (to_string(o) == op_name) op = o;
        if (!op) {
          r.unknown_key(op_path, {"factor_lookup", "llm_inference", "erp_api_call", "database_query",
                                  "report_generation", "external_api"});
          return;
        }
        const presets::settings base = presets::get(*op, *env);
        presets::settings o = base;
        if (!detail::read_fields(r, s, op_path, o, detail::preset_fields)) return;
        if (o.requests_per_second < 0) {
          r.issue(op_path + ".requests_per_second",
                  "must be >= 0 (0: not rate limited), got " + s.at("requests_per_second").dump());
          o.requests_per_second = base.requests_per_second;
        }
        detail::check_fields(r, s, op_path, o, base, detail::preset_fields,
                             [](const presets::settings& x) {
                               (void)resilience::retry{presets::retry_settings(x)};
                               (void)resilience::timeout{presets::timeout_settings(x)};
                               detail::validate(presets::breaker_settings(x));
                               if (x.rate_limited()) detail::validate(presets::rate_limit_settings(x), "limiter");
                             },
                             {{"limit", "timeout"}});
        presets_[key_of(*op, *env)] = o;
      });
    });
  }

  config_defaults d_;
  named_options<circuit_breaker_options> breakers_;
  named_options<limiter_options> limiters_;
  named_options<retry_options> retries_;
  named_options<timeout_options> timeouts_;
  named_options<bulkhead_options> bulkheads_;
  degradation_options degradation_;
  std::map<std::string, degradation_service, std::less<>> services_;
  std::map<std::string, presets::settings, std::less<>> presets_;
};

/// Keeps a configuration file applied: reload() reads the file again,
/// checks it, and applies it in place to the live limiters, breakers and
/// degradation services, or changes nothing and throws config_error. Reloads
/// are serialized; calls through the live objects go on meanwhile, each
/// under the old or the new limits. Thread-safe.
///
///   resilience::config_loader settings{"resilience.json", defaults};
///   settings.reload();                   // at start-up, and again on SIGHUP or a file watch
///   auto erp = settings.current()->retry("erp_api");
class config_loader {
 public:
  /// Loads from `file` over `defaults`, applying to `targets`. Loads nothing yet: call reload().
  explicit config_loader(std::filesystem::path file, config_defaults defaults = {}, config_targets targets = {})
      : file_{std::move(file)},
        defaults_{std::move(defaults)},
        targets_{targets},
        current_{std::make_shared<const config>(defaults_)} {}

  /// Reads, checks and applies the file; returns the configuration now in
  /// force. On any problem throws config_error and the previous one stays.
  std::shared_ptr<const config> reload() {
    std::lock_guard reloading{reload_mutex_};
    try {
      auto next = std::make_shared<const config>(config::load(file_, defaults_));
      next->apply(targets_);
      {
        std::lock_guard lock{mutex_};
        current_ = next;
        ++reloads_;
      }
      detail::emit(&hub_, [&] { return reloaded("applied", 0); });
      return next;
    } catch (const config_error& e) {
      {
        std::lock_guard lock{mutex_};
        ++failures_;
      }
      detail::emit(&hub_, [&] {
        return reloaded("rejected", e.issues().size()).with_severity(log_level::error).with_text("error", e.what());
      });
      throw;
    }
  }

  /// The configuration in force (the code defaults before the first reload).
  std::shared_ptr<const config> current() const {
    std::lock_guard lock{mutex_};
    return current_;
  }
  /// Reloads applied.
  std::uint64_t reloads() const {
    std::lock_guard lock{mutex_};
    return reloads_;
  }
  /// Reloads rejected (nothing applied).
  std::uint64_t failures() const {
    std::lock_guard lock{mutex_};
    return failures_;
  }
  /// The file it reads.
  const std::filesystem::path& file() const noexcept { return file_; }
  /// Its events: config_reloaded_event, once per reload() (also sent to global_events()).
  event_hub& events() const noexcept { return hub_; }

 private:
  // On the clock of the breakers the file creates: the clock the program runs on.
  event reloaded(std::string_view result, std::size_t problems) const {
    return event{config_reloaded_event, file_text_}
        .at(defaults_.breaker.clock.now())
        .with("result", result)
        .with("problems", problems);
  }

  std::filesystem::path file_;
  std::string file_text_{file_.string()};
  config_defaults defaults_;
  config_targets targets_;
  std::mutex reload_mutex_;
  mutable std::mutex mutex_;
  std::shared_ptr<const config> current_;
  std::uint64_t reloads_ = 0;
  std::uint64_t failures_ = 0;
  mutable event_hub hub_;
};

}  // namespace v1
}  // namespace resilience
