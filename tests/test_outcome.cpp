#include <resilience/bulkhead.hpp>
#include <resilience/circuit_breaker.hpp>
#include <resilience/degradation.hpp>
#include <resilience/outcome.hpp>
#include <resilience/rate_limit.hpp>
#include <resilience/timeout.hpp>

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

  outcome<int> r{rejection{.kind = &circuit_open_kind, .retry_after = std::chrono::seconds{5}, .source = "factor_api"}};
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
  CHECK(outcome<int>{rejection{.kind = &timeout_kind}}.value_or(-1) == -1);
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
    std::rethrow_exception(thrown({.kind = &timeout_kind, .source = "llm", .value = 30s}));
  } catch (const timeout_error& e) {
    CHECK(e.limit() == 30s);
    CHECK(e.source() == "llm");
    CHECK(e.kind() == timeout_kind);
  }
  try {
    std::rethrow_exception(thrown({.kind = &rate_limited_kind, .retry_after = 2s, .source = "erp", .detail = "acme"}));
  } catch (const rate_limit_exceeded& e) {
    CHECK(e.key() == "erp");
    CHECK(e.tenant() == "acme");
    CHECK(e.retry_after() == 2s);
  }
  try {
    std::rethrow_exception(
        thrown({.kind = &degraded_kind, .code = degraded_kind_t::code_of(tier::read_only, tier::core)}));
  } catch (const degraded_error& e) {
    CHECK(e.current() == tier::read_only);
    CHECK(e.required() == tier::core);
  }
  CHECK_THROWS_AS(std::rethrow_exception(thrown({.kind = &circuit_open_kind})), circuit_open_error);
  CHECK_THROWS_AS(std::rethrow_exception(thrown({.kind = &bulkhead_full_kind})), bulkhead_full_error);
  CHECK_THROWS_AS(std::rethrow_exception(thrown({.kind = &cancelled_kind})), cancelled_error);
  // All of them share one base.
  CHECK_THROWS_AS(std::rethrow_exception(thrown({.kind = &bulkhead_full_kind})), rejected_error);
}

namespace {
struct too_many_requests : std::runtime_error, retry_after_hint {
  too_many_requests() : std::runtime_error{"HTTP 429"} {}
  std::optional<duration> retry_after() const noexcept override { return std::chrono::seconds{7}; }
};
}  // namespace

TEST_CASE("retry_after comes from a rejection or a user exception's hint", "[outcome]") {
  using namespace std::chrono_literals;
  CHECK(outcome<int>{rejection{.kind = &circuit_open_kind, .retry_after = 30s}}.retry_after() == duration{30s});
  CHECK_FALSE(outcome<int>{rejection{.kind = &bulkhead_full_kind}}.retry_after());
  CHECK(outcome<int>{std::make_exception_ptr(too_many_requests{})}.retry_after() == duration{7s});
  CHECK_FALSE(outcome<int>{std::make_exception_ptr(std::runtime_error{"x"})}.retry_after());
  CHECK_FALSE(outcome<int>{1}.retry_after());
}

TEST_CASE("what() describes the failure; to_exception_ptr converts it", "[outcome]") {
  CHECK(outcome<int>{1}.what().empty());
  CHECK(outcome<int>{std::make_exception_ptr(std::runtime_error{"factor API down"})}.what() == "factor API down");
  CHECK(outcome<int>{std::make_exception_ptr(42)}.what() == "unknown exception");
  const auto r = outcome<int>{rejection{.kind = &circuit_open_kind, .source = "factor_api"}};
  CHECK(r.what().find("factor_api") != std::string::npos);
  CHECK_THROWS_AS(std::rethrow_exception(r.to_exception_ptr()), circuit_open_error);
  CHECK(outcome<int>{1}.to_exception_ptr() == nullptr);
  CHECK_THROWS_AS(r.throw_if_failed(), circuit_open_error);
  CHECK_NOTHROW(outcome<int>{1}.throw_if_failed());
}

namespace {
// A kind defined outside the library, with no exception type of its own.
struct maintenance_window_kind_t final : rejection_kind {
  constexpr maintenance_window_kind_t() : rejection_kind{"maintenance_window"} {}
  std::string message(const rejection& r) const override {
    return "maintenance window '" + std::string{r.source} + "'";
  }
};
constexpr maintenance_window_kind_t maintenance_window_kind{};
}  // namespace

TEST_CASE("rejection kinds are open: a kind of one's own throws, describes and compares like the library's",
          "[outcome]") {
  static_assert(std::is_trivially_copyable_v<rejection>);
  static_assert(sizeof(rejection) <= 64, "a rejection stays a small value");
  const rejection r{.kind = &maintenance_window_kind, .retry_after = std::chrono::seconds{3}, .source = "erp"};
  CHECK(r.is(maintenance_window_kind));
  CHECK_FALSE(r.is(circuit_open_kind));
  CHECK(*r.kind == maintenance_window_kind);
  CHECK_FALSE(*r.kind == timeout_kind);
  const outcome<int> o{r};
  CHECK(o.what() == "maintenance window 'erp'");
  CHECK(o.retry_after() == std::chrono::seconds{3});
  try {
    o.throw_if_failed();
    FAIL("no throw");
  } catch (const rejected_error& e) {  // the default exception type: the base, carrying the kind
    CHECK(e.kind() == maintenance_window_kind);
    CHECK(e.kind().name() == "maintenance_window");
    CHECK(e.source() == "erp");
    CHECK(e.retry_after() == std::chrono::seconds{3});
    CHECK(std::string{e.what()} == "maintenance window 'erp'");
  }
  // The library's kinds say which refusal is the dependency's failure.
  CHECK(timeout_kind.dependency_failure());
  CHECK_FALSE(circuit_open_kind.dependency_failure());
  CHECK_FALSE(maintenance_window_kind.dependency_failure());
}

TEST_CASE("a rejection's what() is its exception's what()", "[outcome]") {
  const rejection all[] = {
      {.kind = &timeout_kind, .source = "llm", .value = std::chrono::seconds{30}},
      {.kind = &circuit_open_kind, .retry_after = std::chrono::seconds{12}, .source = "factor_api"},
      {.kind = &rate_limited_kind, .retry_after = std::chrono::milliseconds{200}, .source = "erp", .detail = "acme"},
      {.kind = &rate_limited_kind, .retry_after = std::chrono::milliseconds{200}, .source = "erp"},
      {.kind = &bulkhead_full_kind, .source = "db"},
      {.kind = &degraded_kind, .code = degraded_kind_t::code_of(tier::maintenance, tier::core)},
      {.kind = &cancelled_kind, .source = "x"},
  };
  for (const rejection& r : all) {
    const outcome<int> o{r};
    try {
      o.throw_if_failed();
    } catch (const rejected_error& e) {
      CHECK(o.what() == e.what());
      CHECK(e.kind() == *r.kind);
    }
  }
}
