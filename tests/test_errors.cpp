#include <resilience/errors.hpp>

#include <catch2/catch.hpp>

#include <string>

using namespace resilience;
using namespace std::chrono_literals;

TEST_CASE("rejections share one base and say who rejected", "[errors]") {
  const circuit_open_error open{"factor_api", 12s};
  const rejected_error& base = open;
  const error& root = open;
  CHECK(base.code() == errc::circuit_open);
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
  CHECK(bulkhead_full_error{"db"}.code() == errc::bulkhead_full);
}

TEST_CASE("names of codes and tiers", "[errors]") {
  CHECK(to_string(errc::rate_limited) == "rate_limited");
  CHECK(to_string(tier::read_only) == "read_only");
  CHECK(static_cast<int>(tier::full) == 1);
  CHECK(static_cast<int>(tier::maintenance) == 4);
}
