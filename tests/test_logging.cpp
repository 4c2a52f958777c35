#include <resilience/logging.hpp>
#include <resilience/presets.hpp>
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>
#include <resilience/timeout.hpp>

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include "support/events.hpp"

#include <chrono>
#include <cstdio>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace resilience;
using namespace support;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

// 2026-11-28T21:05:39.123456Z
const auto fixed_time = std::chrono::sys_days{std::chrono::year{2026} / 11 / 28} + 21h + 5min + 39s + 123456us;

json_logger_options fixed_clock(log_level min = log_level::info) {
  return {.min_level = min,
          .now = [] { return std::chrono::time_point_cast<std::chrono::system_clock::duration>(fixed_time); }};
}

// Formats e and parses it back with a real JSON parser (nlohmann's parser
// also rejects ill-formed UTF-8).
json round_trip(const event& e) {
  const auto line = to_json(e, std::chrono::time_point_cast<std::chrono::system_clock::duration>(fixed_time));
  INFO(line);
  REQUIRE(line.find('\n') == std::string::npos);
  return json::parse(line);
}

std::string logged_failure(std::string_view failure) {
  return round_trip(retries_exhausted("op", 3, std::string{failure}))["failure"].get<std::string>();
}

}  // namespace

TEST_CASE("every line has timestamp, level and event", "[logging]") {
  const auto j = round_trip(timeout_occurred("llm_inference", 30s));
  CHECK(j["timestamp"] == "2026-11-28T21:05:39.123456Z");
  CHECK(j["level"] == "warning");
  CHECK(j["event"] == "timeout_occurred");
  CHECK(j["operation"] == "llm_inference");
  CHECK(j["limit_seconds"] == 30.0);
}

TEST_CASE("each event type logs its fields as JSON values", "[logging]") {
  auto j = round_trip(retry_attempted("factor_lookup", 2, 1500ms, "HTTP 503"));
  CHECK(j["event"] == "retry_attempted");
  CHECK(j["attempt"] == 2);
  CHECK(j["attempt"].is_number_integer());
  CHECK(j["delay_seconds"] == 1.5);
  CHECK(j["failure"] == "HTTP 503");

  j = round_trip(retries_exhausted("erp_api", 6, "timed out"));
  CHECK(j["level"] == "error");
  CHECK(j["attempts"] == 6);

  j = round_trip(fallback_activated("report", "default", "database down"));
  CHECK(j["strategy"] == "default");
  CHECK(j["reason"] == "database down");

  j = round_trip(rate_limit_violated("factor_api", "tenant-7", 100ms));
  CHECK(j["key"] == "factor_api");
  CHECK(j["tenant"] == "tenant-7");
  CHECK(j["retry_after_seconds"] == 0.1);

  j = round_trip(circuit_state_changed("erp_api", circuit_state::closed, circuit_state::open));
  CHECK(j["level"] == "error");
  CHECK(j["from"] == "closed");
  CHECK(j["to"] == "open");
  CHECK(round_trip(circuit_state_changed("erp_api", circuit_state::half_open, circuit_state::closed))["level"] ==
        "info");

  j = round_trip(circuit_rejected("erp_api", circuit_state::open, 42s));
  CHECK(j["state"] == "open");
  CHECK(j["retry_after_seconds"] == 42.0);

  j = round_trip(bulkhead_rejected("database", 10));
  CHECK(j["name"] == "database");
  CHECK(j["max_concurrent_calls"] == 10);

  j = round_trip(tier_changed(tier::full, tier::read_only, "factor_api"));
  CHECK(j["level"] == "warning");
  CHECK(j["from"] == "full");
  CHECK(j["to"] == "read_only");
  CHECK(j["cause"] == "factor_api");
  CHECK(round_trip(tier_changed(tier::core, tier::maintenance, "database"))["level"] == "error");
  CHECK(round_trip(tier_changed(tier::core, tier::full, "llm"))["level"] == "info");

  j = round_trip(service_health_changed("llm", false, 2500ms, "HTTP 500"));
  CHECK(j["healthy"] == false);
  CHECK(j["healthy"].is_boolean());
  CHECK(j["response_time_seconds"] == 2.5);
  CHECK(j["error"] == "HTTP 500");
  CHECK(j["level"] == "warning");
}

TEST_CASE("quotes, backslashes and control characters are escaped", "[logging]") {
  const std::string hostile = "say \"hi\"\\ path C:\\tmp\n\r\t\b\f end";
  CHECK(logged_failure(hostile) == hostile);

  std::string controls;
  for (char c = 0; c < 0x20; ++c) controls.push_back(c);
  controls.push_back('\x7f');
  CHECK(logged_failure(controls) == controls);  // includes an embedded NUL

  const auto line = to_json(retries_exhausted("op", 1, "\x01\x1f"), {});
  CHECK(line.find(R"("failure":"\u0001\u001f")") != std::string::npos);
}

TEST_CASE("valid UTF-8 passes through unchanged", "[logging]") {
  const std::string text =
      "CO\xe2\x82\x82"
      "e \xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e";  // CO₂e été € 𝄞
  CHECK(logged_failure(text) == text);
  // U+2028 is escaped (line separator in JavaScript) but means the same.
  CHECK(logged_failure("a\xe2\x80\xa8z") == "a\xe2\x80\xa8z");
  CHECK(to_json(retries_exhausted("op", 1, "\xe2\x80\xa9"), {}).find("\\u2029") != std::string::npos);
}

TEST_CASE("invalid UTF-8 becomes one U+FFFD per bad byte", "[logging]") {
  const std::string fffd = "\xef\xbf\xbd";
  CHECK(logged_failure("a\xff"
                       "b") == "a" + fffd + "b");
  CHECK(logged_failure("\x80") == fffd);                                   // stray continuation byte
  CHECK(logged_failure("\xc0\xaf") == fffd + fffd);                        // overlong '/'
  CHECK(logged_failure("\xe0\x80\xaf") == fffd + fffd + fffd);             // overlong, 3 bytes
  CHECK(logged_failure("\xed\xa0\x80") == fffd + fffd + fffd);             // UTF-16 surrogate
  CHECK(logged_failure("\xf4\x90\x80\x80") == fffd + fffd + fffd + fffd);  // beyond U+10FFFF
  CHECK(logged_failure("\xf5") == fffd);
  CHECK(logged_failure("x\xe2\x82") == "x" + fffd + fffd);  // truncated at the end
  CHECK(logged_failure("\xe2\x82"
                       "abc") == fffd + fffd + "abc");  // truncated in the middle
}

TEST_CASE("any byte string gives a line a JSON parser accepts", "[logging]") {
  std::mt19937 rng{20261128};  // fixed seed: the same strings every run
  std::uniform_int_distribution<int> byte{0, 255}, length{0, 40};
  for (int i = 0; i < 2000; ++i) {
    std::string s(static_cast<std::size_t>(length(rng)), '\0');
    for (auto& c : s) c = static_cast<char>(byte(rng));
    const auto line = to_json(fallback_activated(s, s, s), {});
    INFO(i);
    REQUIRE(line.find('\n') == std::string::npos);
    REQUIRE(json::accept(line));
  }
}

TEST_CASE("the callback sink gets one line per event, filtered by level", "[logging]") {
  std::vector<std::string> lines;
  json_logger log{[&](std::string_view l) { lines.emplace_back(l); }, fixed_clock(log_level::warning)};
  event_hub hub;
  hub.subscribe(log);

  hub.publish(circuit_state_changed("db", circuit_state::open, circuit_state::half_open));  // info: filtered out
  hub.publish(circuit_state_changed("db", circuit_state::closed, circuit_state::open));     // error
  hub.publish(retry_attempted("db", 1, 1s, "deadlock"));                                    // warning

  REQUIRE(lines.size() == 2);
  CHECK(json::parse(lines[0])["event"] == "circuit_state_changed");
  CHECK(json::parse(lines[1])["event"] == "retry_attempted");
  CHECK(json::parse(lines[1])["timestamp"] == "2026-11-28T21:05:39.123456Z");
}

TEST_CASE("a leveled sink gets each line with its event's level", "[logging]") {
  std::vector<std::pair<log_level, std::string>> got;
  json_logger log{[&](log_level level, std::string_view l) { got.emplace_back(level, l); }, fixed_clock()};
  event_hub hub;
  hub.subscribe(log);

  hub.publish(circuit_state_changed("db", circuit_state::open, circuit_state::half_open));
  hub.publish(circuit_state_changed("db", circuit_state::closed, circuit_state::open));
  hub.publish(retry_attempted("db", 1, 1s, "deadlock"));

  REQUIRE(got.size() == 3);
  CHECK(got[0].first == log_level::info);
  CHECK(got[1].first == log_level::error);
  CHECK(got[2].first == log_level::warning);
  for (const auto& [level, line] : got) CHECK(json::parse(line)["level"] == std::string{to_string(level)});
  CHECK_THROWS_AS(json_logger{json_logger::leveled_sink{}}, std::invalid_argument);
}

TEST_CASE("the FILE* sink writes newline-terminated lines", "[logging]") {
  std::FILE* f = std::tmpfile();
  REQUIRE(f != nullptr);
  json_logger log{f, fixed_clock()};
  log(bulkhead_rejected("report_generator", 2));
  log(tier_changed(tier::full, tier::core, "llm \"gpt\"\n"));

  std::rewind(f);
  std::string content;
  for (int c; (c = std::fgetc(f)) != EOF;) content.push_back(static_cast<char>(c));
  std::fclose(f);

  REQUIRE(!content.empty());
  CHECK(content.back() == '\n');
  std::vector<json> parsed;
  std::size_t start = 0;
  for (auto nl = content.find('\n'); nl != std::string::npos; start = nl + 1, nl = content.find('\n', start))
    parsed.push_back(json::parse(content.substr(start, nl - start)));
  REQUIRE(parsed.size() == 2);
  CHECK(parsed[0]["event"] == "bulkhead_rejected");
  CHECK(parsed[1]["cause"] == "llm \"gpt\"\n");
}

TEST_CASE("lines from many threads never interleave", "[logging]") {
  std::FILE* f = std::tmpfile();
  REQUIRE(f != nullptr);
  event_hub hub;
  hub.subscribe(json_logger{f, {.flush = false}});
  constexpr int threads = 4, per_thread = 200;
  {
    std::vector<std::jthread> workers;
    for (int t = 0; t < threads; ++t)
      workers.emplace_back([&hub, t] {
        for (int i = 0; i < per_thread; ++i)
          hub.publish(retry_attempted("worker", t, 1ms, std::string(static_cast<std::size_t>(50 + t * 30), 'x')));
      });
  }
  std::fflush(f);
  std::rewind(f);
  int lines = 0;
  std::string line;
  for (int c; (c = std::fgetc(f)) != EOF;) {
    if (c != '\n') {
      line.push_back(static_cast<char>(c));
      continue;
    }
    INFO(line);
    REQUIRE(json::accept(line));
    ++lines;
    line.clear();
  }
  std::fclose(f);
  CHECK(line.empty());
  CHECK(lines == threads * per_thread);
}

TEST_CASE("a failing sink does not break the observed call", "[logging]") {
  event_hub hub;
  hub.subscribe(json_logger{[](std::string_view) { throw std::runtime_error{"disk full"}; }});
  int calls = 0;
  CHECK_NOTHROW(detail::emit(&hub, [&] {
    ++calls;
    return timeout_occurred("db", 10s);
  }));
  CHECK(calls == 1);
}

TEST_CASE("a logger without a sink is rejected when built", "[logging]") {
  CHECK_THROWS_AS(json_logger{static_cast<std::FILE*>(nullptr)}, std::invalid_argument);
  CHECK_THROWS_AS(json_logger{json_logger::line_sink{}}, std::invalid_argument);
}

TEST_CASE("every event of the process, as JSON lines, into a log file", "[logging]") {
  std::FILE* log_file = std::tmpfile();
  REQUIRE(log_file != nullptr);
  const auto subscription = resilience::global_events().subscribe(
      resilience::json_logger{log_file, {.min_level = resilience::log_level::warning}});

  resilience::event_hub breaker_hub;  // a policy's own hub: its events reach the global hub too
  detail::emit(&breaker_hub,
               [] { return circuit_state_changed("erp_api", circuit_state::closed, circuit_state::open); });
  detail::emit(&breaker_hub,
               [] { return circuit_state_changed("erp_api", circuit_state::open, circuit_state::half_open); });
  resilience::global_events().unsubscribe(subscription);

  std::rewind(log_file);
  std::string content;
  for (int c; (c = std::fgetc(log_file)) != EOF;) content.push_back(static_cast<char>(c));
  std::fclose(log_file);
  REQUIRE(!content.empty());
  REQUIRE(content.find('\n') == content.size() - 1);  // the half_open line is info: filtered out
  const auto j = json::parse(content);
  CHECK(j["event"] == "circuit_state_changed");
  CHECK(j["level"] == "error");
  CHECK(j["to"] == "open");
}

TEST_CASE("log lines carry the operation a wrapper or its timeout names", "[logging]") {
  manual_clock clk{manual_clock::auto_advance};
  std::vector<std::string> lines;
  const retry r{{.max_retries = 1, .base_delay = 10ms}};
  r.events().subscribe(json_logger{[&](std::string_view line) { lines.emplace_back(line); }});
  auto failing = []() -> int { throw std::runtime_error{"503"}; };
  (void)resilient{failing, r, timeout{operation_type::factor_lookup}}.with_clock(clk).try_call();
  (void)resilient{failing, r}.with_clock(clk).with_operation("erp_sync").try_call();
  REQUIRE(lines.size() == 4);  // retry_attempted and retries_exhausted, twice
  CHECK(json::parse(lines[0])["operation"] == "factor_lookup");
  CHECK(json::parse(lines[1])["operation"] == "factor_lookup");
  CHECK(json::parse(lines[2])["operation"] == "erp_sync");
  CHECK(json::parse(lines[3])["operation"] == "erp_sync");
}
