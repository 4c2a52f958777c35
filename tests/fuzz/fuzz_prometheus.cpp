// fuzz_prometheus.cpp: libFuzzer target. Builds a metrics_registry from
// arbitrary names (operations, breakers, limiters, bulkheads, tenants,
// services, user families and labels), renders it, and checks the text with
// a grammar checker of the Prometheus text exposition format 0.0.4 written
// here, independently of metrics.hpp: names, label names, quoted label
// values with only the format's escapes, valid UTF-8, HELP/TYPE lines, and
// no series twice. A failed check traps.
#include <resilience/bulkhead.hpp>
#include <resilience/circuit_breaker.hpp>
#include <resilience/metrics.hpp>
#include <resilience/rate_limit.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../support/events.hpp"
#include "../support/fuzz.hpp"
#include "../support/utf8.hpp"

namespace {

using namespace resilience;
using namespace support;

bool name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; }
bool name_char(char c) { return name_start(c) || (c >= '0' && c <= '9'); }

// Reads a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) at line[i]; empty when there is none.
std::string read_metric_name(std::string_view line, std::size_t& i) {
  const std::size_t start = i;
  if (i >= line.size() || !name_start(line[i])) return {};
  while (i < line.size() && name_char(line[i])) ++i;
  return std::string{line.substr(start, i - start)};
}

// Reads a label name ([a-zA-Z_][a-zA-Z0-9_]*).
std::string read_label_name(std::string_view line, std::size_t& i) {
  const std::size_t start = i;
  if (i >= line.size() || !name_start(line[i]) || line[i] == ':') return {};
  while (i < line.size() && name_char(line[i]) && line[i] != ':') ++i;
  return std::string{line.substr(start, i - start)};
}

// A sample value: a Go ParseFloat number, NaN, +Inf or -Inf.
bool valid_value(std::string_view v) {
  if (v == "NaN" || v == "+Inf" || v == "-Inf" || v == "Inf") return true;
  std::size_t i = 0;
  if (i < v.size() && (v[i] == '+' || v[i] == '-')) ++i;
  bool digits = false;
  while (i < v.size() && v[i] >= '0' && v[i] <= '9') ++i, digits = true;
  if (i < v.size() && v[i] == '.') {
    ++i;
    while (i < v.size() && v[i] >= '0' && v[i] <= '9') ++i, digits = true;
  }
  if (!digits) return false;
  if (i < v.size() && (v[i] == 'e' || v[i] == 'E')) {
    ++i;
    if (i < v.size() && (v[i] == '+' || v[i] == '-')) ++i;
    bool exp = false;
    while (i < v.size() && v[i] >= '0' && v[i] <= '9') ++i, exp = true;
    if (!exp) return false;
  }
  return i == v.size();
}

struct family_info {
  std::string type;
  bool help = false;
  bool closed = false;  // another family's lines came after it
};

// Checks the whole exposition; traps on the first violation.
void check_exposition(std::string_view text) {
  CHECK_OR_TRAP(strict_utf8(text));
  CHECK_OR_TRAP(text.empty() || text.back() == '\n');
  std::map<std::string, family_info> families;
  std::set<std::string> series_seen;
  std::string current;  // the family of the latest lines
  const auto enter = [&](const std::string& family) {
    if (family == current) return;
    if (!current.empty()) families[current].closed = true;
    CHECK_OR_TRAP(!families[family].closed);  // a family's lines are contiguous
    current = family;
  };
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t end = text.find('\n', pos);
    const std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    CHECK_OR_TRAP(!line.empty());
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
      std::size_t i = 7;
      const std::string name = read_metric_name(line, i);
      CHECK_OR_TRAP(!name.empty());
      CHECK_OR_TRAP(i < line.size() && line[i] == ' ');
      ++i;
      enter(name);
      auto& f = families[name];
      if (line[2] == 'H') {
        CHECK_OR_TRAP(!f.help);
        f.help = true;
        for (std::size_t k = i; k < line.size(); ++k)
          if (line[k] == '\\') {
            CHECK_OR_TRAP(k + 1 < line.size() && (line[k + 1] == '\\' || line[k + 1] == 'n'));
            ++k;
          }
      } else {
        CHECK_OR_TRAP(f.type.empty());
        f.type = std::string{line.substr(i)};
        CHECK_OR_TRAP(f.type == "counter" || f.type == "gauge" || f.type == "histogram" || f.type == "summary" ||
                      f.type == "untyped");
      }
      continue;
    }
    CHECK_OR_TRAP(line.front() != '#');  // the library writes no other comments
    std::size_t i = 0;
    const std::string name = read_metric_name(line, i);
    CHECK_OR_TRAP(!name.empty());
    std::map<std::string, std::string> labels;
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const std::string label = read_label_name(line, i);
        CHECK_OR_TRAP(!label.empty());
        CHECK_OR_TRAP(i + 1 < line.size() && line[i] == '=' && line[i + 1] == '"');
        i += 2;
        std::string value;
        for (;;) {
          CHECK_OR_TRAP(i < line.size());
          const char c = line[i++];
          if (c == '"') break;
          if (c == '\\') {
            CHECK_OR_TRAP(i < line.size());
            const char e = line[i++];
            CHECK_OR_TRAP(e == '\\' || e == '"' || e == 'n');
            value += e == 'n' ? '\n' : e;
          } else {
            value += c;
          }
        }
        CHECK_OR_TRAP(labels.emplace(label, value).second);  // no label twice
        CHECK_OR_TRAP(i < line.size());
        if (line[i] == ',') ++i;
        else CHECK_OR_TRAP(line[i] == '}');
      }
      CHECK_OR_TRAP(i < line.size() && line[i] == '}');
      ++i;
    }
    CHECK_OR_TRAP(i < line.size() && line[i] == ' ');
    ++i;
    CHECK_OR_TRAP(valid_value(line.substr(i)));
    // The sample belongs to the family declared last, by the family's type.
    const auto& f = families[current];
    CHECK_OR_TRAP(!current.empty() && !f.type.empty() && f.help);
    if (f.type == "histogram") {
      CHECK_OR_TRAP(name == current + "_bucket" || name == current + "_sum" || name == current + "_count");
      CHECK_OR_TRAP((name == current + "_bucket") == (labels.count("le") == 1));
    } else {
      CHECK_OR_TRAP(name == current);
    }
    std::string key = name;
    for (const auto& [k, v] : labels) key += '\0' + k + '\0' + v;  // sorted: label order does not make a new series
    CHECK_OR_TRAP(series_seen.insert(key).second);
  }
}

struct hub_owner {
  std::shared_ptr<event_hub> hub = std::make_shared<event_hub>();
  event_hub& events() const noexcept { return *hub; }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  reader in{data, size, 24};  // (op, string, string) records
  hub_owner policy;
  manual_clock clk;
  rate_limiter limits{clk};
  auto m = std::make_unique<metrics_registry>(metrics_options{.count_global_events = false});
  m->count_events_of(policy);
  m->watch(limits);
  std::vector<circuit_breaker> breakers;
  std::vector<std::pair<std::string, std::string>> user_series;  // family, label value
  int steps = 0;
  while (!in.empty() && ++steps < 64) {
    const std::uint8_t op = in.byte();
    const std::string a = in.str();
    const std::string b = in.str();
    const auto state = static_cast<circuit_state>(op % 3);
    auto emit = [&](auto e) { detail::emit(&policy.events(), [&] { return e; }); };
    try {
      switch (op % 16) {
        case 0: emit(support::retry_attempted(a, 1, std::chrono::seconds{1}, b)); break;
        case 1: emit(support::retries_exhausted(a, 3, b)); break;
        case 2: emit(support::timeout_occurred(a, std::chrono::seconds{1})); break;
        case 3: emit(support::fallback_activated(a, b, "x")); break;
        case 4: emit(support::rate_limit_violated(a, b, std::chrono::seconds{1})); break;
        case 5: emit(support::circuit_state_changed(a, state, static_cast<circuit_state>((op / 3) % 3))); break;
        case 6: emit(support::circuit_rejected(a, state, std::chrono::seconds{1})); break;
        case 7: emit(support::bulkhead_rejected(a, 2)); break;
        case 8: emit(support::service_health_changed(a, (op & 32) != 0, std::chrono::seconds{0}, b)); break;
        case 9: emit(support::tier_changed(tier::full, tier::core, a)); break;
        case 10: {
          breakers.emplace_back(circuit_breaker_options{.name = a, .clock = clk, .fail_max = 1});
          m->watch(breakers.back());
          (void)breakers.back().try_call([]() -> int { throw std::runtime_error{"x"}; });
          break;
        }
        case 11: m->watch(bulkhead{{.name = a, .max_concurrent_calls = 1}}); break;
        case 12: m->watch(token_bucket{{.requests_per_second = 1, .burst_size = 1}, clk, a}); break;
        case 13: {
          limits.configure(a, {.requests_per_second = 1, .burst_size = 1});
          (void)limits.try_acquire(a);
          (void)limits.try_acquire(a, b);  // a tenant of the key
          break;
        }
        case 14: user_series.emplace_back(a, b); break;
        case 15: m->watch(circuit_breaker{{.name = a, .clock = clk}}); break;
      }
    } catch (const std::invalid_argument&) {
      // A second object with a name already watched, or a bad name: refused, and the scrape stays valid.
    }
  }
  m->add_collector([&](metric_snapshot& s) {
    for (const auto& [family, value] : user_series) {
      try {
        s.add(family, metric_type::gauge, value, {{"label", value}}, 1);
        s.add("user_family", metric_type::counter, value, {{"v", value}, {"w", family}}, 2);
      } catch (const std::exception&) {
        // Invalid family names and a family declared with two types are refused.
      }
    }
  });
  check_exposition(m->render());
  check_exposition(m->render());  // a second scrape too: series are never removed
  return 0;
}
