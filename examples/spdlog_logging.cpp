// Resilience events in an application that already logs with spdlog: a
// json_logger with a leveled sink hands each event's JSON line to an spdlog
// logger at the matching level, so retries show up as warnings and a
// breaker opening as an error, next to the application's own lines.
// Built only when spdlog is installed (Debian: libspdlog-dev). Time is
// virtual (auto-advance), so the story takes no real time.
#include <resilience/circuit_breaker.hpp>
#include <resilience/logging.hpp>
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <string_view>

using namespace std::chrono_literals;

namespace {

resilience::manual_clock virtual_time{resilience::manual_clock::auto_advance};

// [spdlog adapter]
spdlog::level::level_enum spdlog_level(resilience::log_level level) {
  switch (level) {
    case resilience::log_level::debug: return spdlog::level::debug;
    case resilience::log_level::info: return spdlog::level::info;
    case resilience::log_level::warning: return spdlog::level::warn;
    case resilience::log_level::error: return spdlog::level::err;
  }
  return spdlog::level::info;
}

// A listener for global_events() or a policy's events(): one spdlog record per event.
resilience::json_logger to_spdlog(std::shared_ptr<spdlog::logger> logger) {
  return resilience::json_logger{[logger = std::move(logger)](resilience::log_level level, std::string_view line) {
    logger->log(spdlog_level(level), "{}", line);
  }};
}
// [spdlog adapter]

// The ERP answers 503 twice, then pages of purchase orders.
int erp_calls = 0;
std::string pull_purchase_orders(int page) {
  if (++erp_calls <= 2) throw std::runtime_error{"ERP: HTTP 503"};
  return "page " + std::to_string(page) + ": 50 purchase orders";
}

}  // namespace

int main() {
  auto logger = spdlog::stdout_logger_st("intake");
  logger->set_pattern("[%n] [%l] %v");  // the JSON line carries its own timestamp

  // [subscribe]
  const auto subscription = resilience::global_events().subscribe(to_spdlog(logger));
  // [subscribe]

  resilience::resilient pull{pull_purchase_orders, resilience::retry{{.max_retries = 3, .base_delay = 1s}}};
  pull.with_clock(virtual_time);
  logger->info("intake: {}", pull.call_with({.operation = "erp_intake"}, 1));

  // A dead factor API: two failures open its breaker (an error record).
  resilience::circuit_breaker factor_breaker{{.name = "factor_api", .clock = virtual_time, .fail_max = 2}};
  for (int i = 0; i < 3; ++i)
    (void)factor_breaker.try_call([]() -> double { throw std::runtime_error{"factor API: connection refused"}; });

  resilience::global_events().unsubscribe(subscription);
  return erp_calls == 3 && factor_breaker.state() == resilience::circuit_state::open ? 0 : 1;
}
