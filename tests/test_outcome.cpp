#include <resilience/outcome.hpp>

#include <catch2/catch.hpp>

#include <memory>
#include <stdexcept>

using namespace resilience;

TEST_CASE("outcome holds a value, an exception or a rejection", "[outcome]") {
  outcome<int> v{42};
  CHECK(v.has_value());
  CHECK(v.value() == 42);

  auto ex = std::make_exception_ptr(std::runtime_error{"boom"});
  outcome<int> e{ex};
  CHECK(e.has_exception());
  CHECK(e.exception() == ex);
  CHECK_THROWS_AS(e.value(), std::runtime_error);

  outcome<int> r{rejection{.code = errc::circuit_open, .retry_after = std::chrono::seconds{5}, .source = "factor_api"}};
  CHECK(r.has_rejection());
  CHECK_THROWS_AS(r.value(), circuit_open_error);
}
