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

TEST_CASE("outcome<void> and move-only values", "[outcome]") {
  outcome<void> ok;
  CHECK(ok.has_value());
  CHECK_NOTHROW(ok.value());
  outcome<void> bad{std::make_exception_ptr(std::logic_error{"x"})};
  CHECK_THROWS_AS(bad.value(), std::logic_error);

  outcome<std::unique_ptr<int>> p{std::make_unique<int>(3)};
  REQUIRE(p);
  CHECK(**p == 3);
  std::unique_ptr<int> taken = std::move(p).value();
  CHECK(*taken == 3);
}

TEST_CASE("value_or gives the fallback on any failure", "[outcome]") {
  CHECK(outcome<int>{7}.value_or(0) == 7);
  CHECK(outcome<int>{std::make_exception_ptr(1)}.value_or(0) == 0);
  CHECK(outcome<int>{rejection{.code = errc::timeout}}.value_or(-1) == -1);
}

TEST_CASE("each rejection throws its own exception type with its data", "[outcome]") {
  using namespace std::chrono_literals;
  const auto thrown = [](const rejection& r) -> std::exception_ptr {
    try {
      throw_rejection(r);
    } catch (...) {
      return std::current_exception();
    }
  };
  try {
    std::rethrow_exception(thrown({.code = errc::timeout, .source = "llm", .limit = 30s}));
  } catch (const timeout_error& e) {
    CHECK(e.limit() == 30s);
    CHECK(e.source() == "llm");
    CHECK(e.code() == errc::timeout);
  }
  try {
    std::rethrow_exception(thrown({.code = errc::rate_limited, .retry_after = 2s, .source = "erp", .tenant = "acme"}));
  } catch (const rate_limit_exceeded& e) {
    CHECK(e.key() == "erp");
    CHECK(e.tenant() == "acme");
    CHECK(e.retry_after() == 2s);
  }
  try {
    std::rethrow_exception(thrown({.code = errc::degraded, .current = tier::read_only, .required = tier::core}));
  } catch (const degraded_error& e) {
    CHECK(e.current() == tier::read_only);
    CHECK(e.required() == tier::core);
  }
  CHECK_THROWS_AS(std::rethrow_exception(thrown({.code = errc::circuit_open})), circuit_open_error);
  CHECK_THROWS_AS(std::rethrow_exception(thrown({.code = errc::bulkhead_full})), bulkhead_full_error);
  CHECK_THROWS_AS(std::rethrow_exception(thrown({.code = errc::cancelled})), cancelled_error);
  // All of them share one base.
  CHECK_THROWS_AS(std::rethrow_exception(thrown({.code = errc::bulkhead_full})), rejected_error);
}

namespace {
struct too_many_requests : std::runtime_error, retry_after_hint {
  too_many_requests() : std::runtime_error{"HTTP 429"} {}
  std::optional<duration> retry_after() const noexcept override { return std::chrono::seconds{7}; }
};
}  // namespace

TEST_CASE("retry_after comes from a rejection or a user exception's hint", "[outcome]") {
  using namespace std::chrono_literals;
  CHECK(outcome<int>{rejection{.code = errc::circuit_open, .retry_after = 30s}}.retry_after() == duration{30s});
  CHECK_FALSE(outcome<int>{rejection{.code = errc::bulkhead_full}}.retry_after());
  CHECK(outcome<int>{std::make_exception_ptr(too_many_requests{})}.retry_after() == duration{7s});
  CHECK_FALSE(outcome<int>{std::make_exception_ptr(std::runtime_error{"x"})}.retry_after());
  CHECK_FALSE(outcome<int>{1}.retry_after());
}

TEST_CASE("what() describes the failure; to_exception_ptr converts it", "[outcome]") {
  CHECK(outcome<int>{1}.what().empty());
  CHECK(outcome<int>{std::make_exception_ptr(std::runtime_error{"factor API down"})}.what() == "factor API down");
  CHECK(outcome<int>{std::make_exception_ptr(42)}.what() == "unknown exception");
  const auto r = outcome<int>{rejection{.code = errc::circuit_open, .source = "factor_api"}};
  CHECK(r.what().find("factor_api") != std::string::npos);
  CHECK_THROWS_AS(std::rethrow_exception(r.to_exception_ptr()), circuit_open_error);
  CHECK(outcome<int>{1}.to_exception_ptr() == nullptr);
  CHECK_THROWS_AS(r.throw_if_failed(), circuit_open_error);
  CHECK_NOTHROW(outcome<int>{1}.throw_if_failed());
}
