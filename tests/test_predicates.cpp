#include <resilience/circuit_breaker.hpp>
#include <resilience/degradation.hpp>
#include <resilience/predicates.hpp>
#include <resilience/rate_limit.hpp>
#include <resilience/timeout.hpp>

#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>

using namespace resilience;

namespace {
struct http_error : std::runtime_error {
  int status;
  explicit http_error(int s) : std::runtime_error{"http " + std::to_string(s)}, status{s} {}
};
struct http_response {
  int status;
};
template <class E>
std::exception_ptr ptr(E e) {
  return std::make_exception_ptr(std::move(e));
}
}  // namespace

TEST_CASE("exception lists match by catch rules", "[predicates]") {
  const exception_filter none;
  CHECK_FALSE(none);
  CHECK_FALSE(none.matches(ptr(http_error{500})));

  const exception_filter io{exceptions<std::runtime_error, std::bad_alloc>{}};
  CHECK(io);
  CHECK(io.matches(ptr(http_error{500})));  // derived from a listed base
  CHECK(io.matches(ptr(std::bad_alloc{})));
  CHECK_FALSE(io.matches(ptr(std::logic_error{"x"})));
  CHECK_FALSE(io.matches(ptr(42)));
  CHECK_FALSE(exception_filter{exceptions<>{}}.matches(ptr(http_error{1})));
}

TEST_CASE("exception predicates: typed, on the exception_ptr, or from a type list", "[predicates]") {
  const exception_predicate server_error = [](const http_error& e) { return e.status >= 500; };
  CHECK(server_error);
  CHECK(server_error(ptr(http_error{503})));
  CHECK_FALSE(server_error(ptr(http_error{404})));
  CHECK_FALSE(server_error(ptr(std::logic_error{"other type"})));

  const exception_predicate any = [](const std::exception_ptr& e) { return e != nullptr; };
  CHECK(any(ptr(1)));

  const exception_predicate listed = exceptions<std::logic_error>{};
  CHECK(listed(ptr(std::invalid_argument{"x"})));
  CHECK_FALSE(listed(ptr(http_error{500})));
  CHECK_FALSE(exception_predicate{});
}

TEST_CASE("result predicates know their argument type", "[predicates]") {
  const result_predicate unavailable = [](const http_response& r) { return r.status == 503; };
  CHECK(unavailable);
  CHECK(unavailable.accepts<http_response>());
  CHECK_FALSE(unavailable.accepts<int>());
  CHECK_FALSE(unavailable.accepts<void>());
  CHECK(unavailable(http_response{503}));
  CHECK_FALSE(unavailable(http_response{200}));
  CHECK(unavailable.type_name().find("http_response") != std::string::npos);
  CHECK_FALSE(result_predicate{});
  CHECK(result_predicate{}.type_name() == "nothing");
}

TEST_CASE("sets of rejection kinds", "[predicates]") {
  const kind_set some{timeout_kind, circuit_open_kind};
  CHECK(some.contains(timeout_kind));
  CHECK(some.contains(circuit_open_kind));
  CHECK_FALSE(some.contains(rate_limited_kind));
  CHECK_FALSE(kind_set{}.contains(timeout_kind));
  CHECK(kind_set::all().contains(degraded_kind));
}

namespace {
struct kill_switch_kind_t final : rejection_kind {
  constexpr kill_switch_kind_t() : rejection_kind{"kill_switch"} {}
  std::string message(const rejection&) const override { return "off"; }
};
constexpr kill_switch_kind_t kill_switch_kind{};
}  // namespace

TEST_CASE("kind sets are open and compose with |", "[predicates]") {
  constexpr kind_set mine{kill_switch_kind};
  static_assert(mine.contains(kill_switch_kind));
  static_assert(!mine.contains(timeout_kind));
  CHECK(kind_set::all().contains(kill_switch_kind));  // all() means every kind, present and future
  const kind_set both = mine | kind_set{timeout_kind, kill_switch_kind};
  CHECK(both.contains(kill_switch_kind));
  CHECK(both.contains(timeout_kind));
  CHECK_FALSE(both.contains(circuit_open_kind));
  CHECK((kind_set{} | kind_set::all()).contains(degraded_kind));
  kind_set full{timeout_kind, circuit_open_kind, rate_limited_kind, degraded_kind, kill_switch_kind, cancelled_kind};
  full = full | kind_set{timeout_kind};  // already there: no room needed
  struct extra_t final : rejection_kind {
    constexpr explicit extra_t(std::string_view n) : rejection_kind{n} {}
    std::string message(const rejection&) const override { return {}; }
  };
  static constexpr extra_t a{"a"}, b{"b"}, c{"c"};
  CHECK_NOTHROW(full = full | kind_set{a, b});
  CHECK_THROWS_AS(full | kind_set{c}, std::length_error);
}
