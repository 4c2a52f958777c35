// resilience/logging.hpp: JSON-lines structured logging of resilience events,
// formatted with {fmt}. The only header of the library that needs fmt.
//
// Each event becomes one line, one JSON object:
//   {"timestamp":"2026-11-28T21:05:39.123456Z","level":"warning","event":"retry_attempted",
//    "operation":"factor_lookup","attempt":1,"delay_seconds":1,"failure":"HTTP 503"}
//
//   #include <resilience/logging.hpp>
//   resilience::global_events().subscribe(resilience::json_logger{stderr});
//
// Strings are escaped per RFC 8259: quotes, backslashes and control
// characters become escapes, and bytes that are not valid UTF-8 (an exception
// message from a C library, a truncated multi-byte character) each become
// "\ufffd", the replacement character, so every line is valid UTF-8 JSON
// whatever the input (the escaping is shared with metrics.hpp, in
// detail/text_escape.hpp).
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <functional>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "detail/text_escape.hpp"
#include "events.hpp"

namespace resilience {
inline namespace v1 {

/// Severity of a log line; a larger value is more severe.
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

/// The level an event is logged at: failures the policy absorbed (a retry, a
/// fallback, a rejection) are warnings; a breaker opening, retries running
/// out and the maintenance tier are errors; recoveries are info.
constexpr log_level level_of(const event& e) noexcept {
  struct visitor {
    constexpr log_level operator()(const retry_attempted&) const noexcept { return log_level::warning; }
    constexpr log_level operator()(const retries_exhausted&) const noexcept { return log_level::error; }
    constexpr log_level operator()(const timeout_occurred&) const noexcept { return log_level::warning; }
    constexpr log_level operator()(const fallback_activated&) const noexcept { return log_level::warning; }
    constexpr log_level operator()(const rate_limit_violated&) const noexcept { return log_level::warning; }
    constexpr log_level operator()(const circuit_state_changed& c) const noexcept {
      return c.to == circuit_state::open ? log_level::error : log_level::info;
    }
    constexpr log_level operator()(const circuit_rejected&) const noexcept { return log_level::warning; }
    constexpr log_level operator()(const bulkhead_rejected&) const noexcept { return log_level::warning; }
    constexpr log_level operator()(const tier_changed& t) const noexcept {
      if (t.to == tier::maintenance) return log_level::error;
      return t.to > t.from ? log_level::warning : log_level::info;
    }
    constexpr log_level operator()(const service_health_changed& s) const noexcept {
      return s.healthy ? log_level::info : log_level::warning;
    }
  };
  return std::visit(visitor{}, e);
}

namespace detail {

// Writes the fields of one event as `,"key":value` pairs.
class json_fields {
 public:
  explicit json_fields(fmt::memory_buffer& out) noexcept : out_{out} {}

  void add(std::string_view key, std::string_view value) {
    begin(key);
    append_json_string(out_, value);
  }
  void add(std::string_view key, const std::string& value) { add(key, std::string_view{value}); }
  void add(std::string_view key, const char* value) { add(key, std::string_view{value}); }
  void add(std::string_view key, bool value) {
    begin(key);
    out_.append(value ? std::string_view{"true"} : std::string_view{"false"});
  }
  template <class Int>
    requires std::is_integral_v<Int> && (!std::is_same_v<Int, bool>)
  void add(std::string_view key, Int value) {
    begin(key);
    fmt::format_to(std::back_inserter(out_), "{}", value);
  }
  // Durations are logged as seconds (a JSON number), with "_seconds" in the key.
  void add(std::string_view key, duration value) {
    begin(key);
    fmt::format_to(std::back_inserter(out_), "{}", std::chrono::duration<double>(value).count());
  }

 private:
  void begin(std::string_view key) {
    out_.append(std::string_view{",\""});
    out_.append(key);
    out_.append(std::string_view{"\":"});
  }
  fmt::memory_buffer& out_;
};

inline void append_fields(json_fields& f, const retry_attempted& e) {
  f.add("operation", e.operation);
  f.add("attempt", e.attempt);
  f.add("delay_seconds", e.delay);
  f.add("failure", e.failure);
}
inline void append_fields(json_fields& f, const retries_exhausted& e) {
  f.add("operation", e.operation);
  f.add("attempts", e.attempts);
  f.add("failure", e.failure);
}
inline void append_fields(json_fields& f, const timeout_occurred& e) {
  f.add("operation", e.operation);
  f.add("limit_seconds", e.limit);
}
inline void append_fields(json_fields& f, const fallback_activated& e) {
  f.add("operation", e.operation);
  f.add("strategy", e.strategy);
  f.add("reason", e.reason);
}
inline void append_fields(json_fields& f, const rate_limit_violated& e) {
  f.add("key", e.key);
  f.add("tenant", e.tenant);
  f.add("retry_after_seconds", e.retry_after);
}
inline void append_fields(json_fields& f, const circuit_state_changed& e) {
  f.add("name", e.name);
  f.add("from", to_string(e.from));
  f.add("to", to_string(e.to));
}
inline void append_fields(json_fields& f, const circuit_rejected& e) {
  f.add("name", e.name);
  f.add("state", to_string(e.state));
  f.add("retry_after_seconds", e.retry_after);
}
inline void append_fields(json_fields& f, const bulkhead_rejected& e) {
  f.add("name", e.name);
  f.add("max_concurrent_calls", e.max_concurrent_calls);
}
inline void append_fields(json_fields& f, const tier_changed& e) {
  f.add("from", to_string(e.from));
  f.add("to", to_string(e.to));
  f.add("cause", e.cause);
}
inline void append_fields(json_fields& f, const service_health_changed& e) {
  f.add("service", e.service);
  f.add("healthy", e.healthy);
  f.add("response_time_seconds", e.response_time);
  f.add("error", e.error);
}

// RFC 3339 UTC with microseconds: "2026-11-28T21:05:39.123456Z".
inline void append_timestamp(fmt::memory_buffer& out, std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto us = floor<microseconds>(t);
  const auto day = floor<days>(us);
  const year_month_day ymd{day};
  const hh_mm_ss hms{us - day};
  fmt::format_to(std::back_inserter(out), "\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z\"", static_cast<int>(ymd.year()),
                 static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()), hms.hours().count(),
                 hms.minutes().count(), hms.seconds().count(), hms.subseconds().count());
}

}  // namespace detail

/// Appends one event as a JSON object (no newline) to out.
inline void format_json(fmt::memory_buffer& out, const event& e, std::chrono::system_clock::time_point at) {
  out.append(std::string_view{"{\"timestamp\":"});
  detail::append_timestamp(out, at);
  out.append(std::string_view{",\"level\":\""});
  out.append(to_string(level_of(e)));
  out.append(std::string_view{"\",\"event\":\""});
  out.append(event_name(e));
  out.push_back('"');
  detail::json_fields fields{out};
  std::visit([&](const auto& ev) { detail::append_fields(fields, ev); }, e);
  out.push_back('}');
}

/// One event as a JSON object (no newline), stamped with `at`.
inline std::string to_json(const event& e, std::chrono::system_clock::time_point at) {
  fmt::memory_buffer out;
  format_json(out, e, at);
  return fmt::to_string(out);
}

/// Settings of a json_logger.
struct json_logger_options {
  /// Events below this level are not formatted at all. Default: info (everything the library emits).
  log_level min_level = log_level::info;
  /// Where timestamps come from. Default (empty): std::chrono::system_clock::now.
  std::function<std::chrono::system_clock::time_point()> now{};
  /// For a FILE* sink: fflush after every line, so lines survive a crash. Default: true.
  bool flush = true;
};

/// An event listener that writes each event as one JSON line to a sink: a
/// FILE* (one fwrite per line, so lines from several threads never
/// interleave) or a callback that receives the line without its newline,
/// with or without its level (a callback must be thread-safe if events come
/// from several threads). Subscribe it to a policy's events() or to
/// global_events().
class json_logger {
 public:
  /// Receives one formatted line, without the trailing newline.
  using line_sink = std::function<void(std::string_view line)>;
  /// Receives the event's level (level_of) and its line: the hook for a
  /// logging library with levels of its own (spdlog, glog, syslog).
  using leveled_sink = std::function<void(log_level level, std::string_view line)>;

  /// Writes to out (stderr, stdout, a log file the caller keeps open and closes after the logger is gone).
  explicit json_logger(std::FILE* out, json_logger_options options = {}) : file_{out}, options_{std::move(options)} {
    if (out == nullptr) throw std::invalid_argument{"json_logger: FILE* sink must not be null"};
  }

  /// Hands each line to sink.
  explicit json_logger(line_sink sink, json_logger_options options = {}) : options_{std::move(options)} {
    if (!sink) throw std::invalid_argument{"json_logger: sink must not be empty"};
    sink_ = std::make_shared<leveled_sink>([s = std::move(sink)](log_level, std::string_view line) { s(line); });
  }

  /// Hands each line and its level to sink.
  explicit json_logger(leveled_sink sink, json_logger_options options = {})
      : sink_{std::make_shared<leveled_sink>(std::move(sink))}, options_{std::move(options)} {
    if (!*sink_) throw std::invalid_argument{"json_logger: sink must not be empty"};
  }

  /// Formats and writes e (the event_hub listener signature).
  void operator()(const event& e) const {
    const log_level level = level_of(e);
    if (level < options_.min_level) return;
    fmt::memory_buffer line;
    format_json(line, e, options_.now ? options_.now() : std::chrono::system_clock::now());
    if (file_ != nullptr) {
      // One fwrite per line: stdio locks the stream per call, so lines never interleave.
      line.push_back('\n');
      std::fwrite(line.data(), 1, line.size(), file_);
      if (options_.flush) std::fflush(file_);
    } else {
      (*sink_)(level, std::string_view{line.data(), line.size()});
    }
  }

 private:
  std::FILE* file_ = nullptr;
  std::shared_ptr<leveled_sink> sink_;  // shared: event_hub and users copy listeners
  json_logger_options options_;
};

}  // namespace v1
}  // namespace resilience
