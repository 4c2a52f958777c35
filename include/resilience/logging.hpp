// resilience/logging.hpp: JSON-lines structured logging of resilience events,
// formatted with {fmt}. The only header of the library that needs fmt.
//
// Each event becomes one line, one JSON object: timestamp, level (the
// event's severity), event (its kind's name), then what its kind says it
// carries (operation, its source under the kind's key, tenant) and every
// field, whatever policy emitted it:
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
#include <cmath>
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

/// The level an event is logged at: its severity (the kind's, or what the
/// emitter chose: a breaker opening, retries running out and the maintenance
/// tier are errors; failures a policy absorbed are warnings; recoveries info).
inline log_level level_of(const event& e) noexcept { return e.severity(); }

namespace detail {

// Writes the fields of one event as `,"key":value` pairs.
class json_fields {
 public:
  explicit json_fields(fmt::memory_buffer& out) noexcept : out_{out} {}

  void add(std::string_view key, std::string_view value) {
    begin(key);
    append_json_string(out_, value);
  }
  // One typed field; durations are logged as seconds (a JSON number), with "_seconds" after the key.
  void add(std::string_view key, const event_value& value) {
    if (const auto* d = std::get_if<duration>(&value)) {
      begin(key, "_seconds");
      fmt::format_to(std::back_inserter(out_), "{}", std::chrono::duration<double>(*d).count());
    } else if (const auto* sv = std::get_if<std::string_view>(&value)) {
      add(key, *sv);
    } else if (const auto* b = std::get_if<bool>(&value)) {
      begin(key);
      out_.append(*b ? std::string_view{"true"} : std::string_view{"false"});
    } else if (const auto* i = std::get_if<std::int64_t>(&value)) {
      begin(key);
      fmt::format_to(std::back_inserter(out_), "{}", *i);
    } else if (const auto* x = std::get_if<double>(&value)) {
      begin(key);
      if (std::isfinite(*x)) fmt::format_to(std::back_inserter(out_), "{}", *x);
      else out_.append(std::string_view{"null"});  // JSON has no NaN or infinity
    }
  }

 private:
  void begin(std::string_view key, std::string_view suffix = {}) {
    out_.append(std::string_view{",\""});
    out_.append(key);
    out_.append(suffix);
    out_.append(std::string_view{"\":"});
  }
  fmt::memory_buffer& out_;
};

// RFC 3339 UTC with microseconds: "2026-11-28T21:05:39.123456Z".
inline void append_timestamp(fmt::memory_buffer& out, std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto us = floor<microseconds>(t);
  const auto day = floor<days>(us);
  const year_month_day ymd{day};
  const hh_mm_ss hms{us - day};
  fmt::format_to(std::back_inserter(out), "\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z\"",
                 static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                 hms.hours().count(), hms.minutes().count(), hms.seconds().count(), hms.subseconds().count());
}

}  // namespace detail

/// Appends one event as a JSON object (no newline) to out.
inline void format_json(fmt::memory_buffer& out, const event& e, std::chrono::system_clock::time_point at) {
  out.append(std::string_view{"{\"timestamp\":"});
  detail::append_timestamp(out, at);
  out.append(std::string_view{",\"level\":\""});
  out.append(to_string(level_of(e)));
  out.append(std::string_view{"\",\"event\":\""});
  out.append(e.name());
  out.push_back('"');
  // What the kind says it carries, then every field, in order.
  detail::json_fields fields{out};
  const event_kind_options& kind = e.kind().options();
  if (kind.operation) fields.add("operation", e.operation());
  if (!kind.source_key.empty()) fields.add(kind.source_key, e.source());
  if (kind.tenant) fields.add("tenant", e.tenant());
  for (const event_field& f : e.fields()) fields.add(f.name, f.value);
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
