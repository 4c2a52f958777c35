#include <resilience/bulkhead.hpp>
#include <resilience/circuit_breaker.hpp>
#include <resilience/degradation.hpp>
#include <resilience/errors.hpp>
#include <resilience/rate_limit.hpp>
#include <resilience/timeout.hpp>

#include <catch2/catch.hpp>

#include <string>

using namespace resilience;
using namespace std::chrono_literals;

TEST_CASE("rejections share one base and say who rejected", "[errors]") {
  const circuit_open_error open{"factor_api", 12s};
  const rejected_error& base = open;
  const error& root = open;
  CHECK(base.kind() == circuit_open_kind);
  CHECK(open.name() == "factor_api");
  CHECK(base.retry_after() == 12s);
  CHECK(std::string{root.what()}.find("factor_api") != std::string::npos);

  const rate_limit_exceeded limited{"erp_api", 200ms, "tenant-7"};
  CHECK(limited.key() == "erp_api");
  CHECK(limited.tenant() == "tenant-7");
  CHECK(std::string{limited.what()}.find("tenant-7") != std::string::npos);

  const degraded_error degraded{tier::maintenance, tier::core};
  CHECK(std::string{degraded.what()}.find("maintenance") != std::string::npos);
  CHECK(timeout_error{5s}.limit() == 5s);
  CHECK(bulkhead_full_error{"db"}.kind() == bulkhead_full_kind);
}

TEST_CASE("names of kinds and tiers", "[errors]") {
  CHECK(rate_limited_kind.name() == "rate_limited");
  CHECK(timeout_kind.name() == "timeout");
  CHECK(circuit_open_kind.name() == "circuit_open");
  CHECK(bulkhead_full_kind.name() == "bulkhead_full");
  CHECK(degraded_kind.name() == "degraded");
  CHECK(cancelled_kind.name() == "cancelled");
  CHECK(to_string(tier::read_only) == "read_only");
  CHECK(static_cast<int>(tier::full) == 1);
  CHECK(static_cast<int>(tier::maintenance) == 4);
}

TEST_CASE("format_duration writes durations as a person reads them", "[errors]") {
  CHECK(format_duration(0s) == "0 s");
  CHECK(format_duration(850ns) == "850 ns");
  CHECK(format_duration(12'500ns) == "12.5 us");
  CHECK(format_duration(200ms) == "200 ms");
  CHECK(format_duration(999'700us) == "1 s");  // %.3g would say "1e+03 ms"
  CHECK(format_duration(59'375'284us) == "59.4 s");
  CHECK(format_duration(59'990ms) == "1 min 0 s");
  CHECK(format_duration(612s) == "10 min 12 s");
  CHECK(format_duration(3'599'600ms) == "1 h 0 min");
  CHECK(format_duration(7'500s) == "2 h 5 min");
  CHECK(format_duration(100h) == "4 d 4 h");
  CHECK(format_duration(-250ms) == "-250 ms");
  CHECK(format_duration(duration::max()) == "106752 d 0 h");
  CHECK(format_duration(duration::min()) == "-106752 d 0 h");  // no overflow at the extremes
  CHECK(std::string{circuit_open_error{"factor_api", 59'375'284us}.what()} ==
        "circuit breaker 'factor_api' is open; next trial in 59.4 s");
}
