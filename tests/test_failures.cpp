#include <resilience/circuit_breaker.hpp>
#include <resilience/degradation.hpp>
#include <resilience/failures.hpp>
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

template <class E>
bool handles(const failures& f, E e) {
  const std::exception_ptr p = ptr(std::move(e));
  return f.matches(failure{&p});
}
bool handles_rejection(const failures& f, const rejection_kind& k) {
  const rejection r{.kind = &k};
  return f.matches(failure{&r});
}
template <class T>
bool handles_result(const failures& f, const T& v) {
  return f.matches(failure{&v});
}
}  // namespace

TEST_CASE("exception lists match by catch rules", "[failures]") {
  const failures none = failures::none();
  CHECK(none.empty());
  CHECK_FALSE(handles(none, http_error{500}));

  const failures io = failures::exceptions<std::runtime_error, std::bad_alloc>();
  CHECK_FALSE(io.empty());
  CHECK(handles(io, http_error{500}));  // derived from a listed base
  CHECK(handles(io, std::bad_alloc{}));
  CHECK_FALSE(handles(io, std::logic_error{"x"}));
  CHECK_FALSE(handles(io, 42));
  CHECK_FALSE(handles(failures{}, http_error{1}));
}

TEST_CASE("exception predicates: typed, on the exception_ptr, or from a type list", "[failures]") {
  const failures server_error = failures::exceptions_if([](const http_error& e) { return e.status >= 500; });
  CHECK_FALSE(server_error.empty());
  CHECK(handles(server_error, http_error{503}));
  CHECK_FALSE(handles(server_error, http_error{404}));
  CHECK_FALSE(handles(server_error, std::logic_error{"other type"}));

  const failures any = failures::exceptions_if([](const std::exception_ptr& e) { return e != nullptr; });
  CHECK(handles(any, 1));

  const failures listed = failures::exceptions<std::logic_error>();
  CHECK(handles(listed, std::invalid_argument{"x"}));
  CHECK_FALSE(handles(listed, http_error{500}));
  CHECK(failures{}.empty());
}

TEST_CASE("result predicates know their argument type", "[failures]") {
  const failures unavailable = failures::results([](const http_response& r) { return r.status == 503; });
  CHECK(unavailable.has_result_predicates());
  CHECK(unavailable.takes_result<http_response>());
  CHECK_FALSE(unavailable.takes_result<int>());
  CHECK_FALSE(unavailable.takes_result<void>());
  CHECK(handles_result(unavailable, http_response{503}));
  CHECK_FALSE(handles_result(unavailable, http_response{200}));
  CHECK(unavailable.result_type_names().find("http_response") != std::string::npos);
  CHECK_FALSE(failures{}.has_result_predicates());
  CHECK(failures{}.result_type_names() == "nothing");
}

TEST_CASE("sets of rejection kinds", "[failures]") {
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

TEST_CASE("kind sets are open and compose with |", "[failures]") {
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

TEST_CASE("any() is every exception and rejection, no result; exceptions() and rejections() split it", "[failures]") {
  const failures any = failures::any();
  CHECK(any.handles_every_exception());
  CHECK(handles(any, 7));
  CHECK(handles_rejection(any, timeout_kind));
  CHECK(handles_rejection(any, kill_switch_kind));
  CHECK_FALSE(any.has_result_predicates());
  CHECK_FALSE(handles_result(any, 1));
  CHECK(handles(failures::exceptions(), 7));
  CHECK_FALSE(handles_rejection(failures::exceptions(), timeout_kind));
  CHECK_FALSE(handles(failures::rejections(), 7));
  CHECK(handles_rejection(failures::rejections(), degraded_kind));
  CHECK(failures::none().handles_no_exception());
  CHECK(failures::rejections().handles_no_exception());
}

TEST_CASE("rejections of a user kind, and exception types that match rejections", "[failures]") {
  const failures mine = failures::rejections({kill_switch_kind});
  CHECK(handles_rejection(mine, kill_switch_kind));
  CHECK_FALSE(handles_rejection(mine, timeout_kind));
  CHECK_FALSE(handles(mine, http_error{500}));
  // A rejection reaches the caller as its kind's exception: type lists see it so.
  CHECK(handles_rejection(failures::exceptions<circuit_open_error>(), circuit_open_kind));
  CHECK_FALSE(handles_rejection(failures::exceptions<circuit_open_error>(), timeout_kind));
  CHECK(handles_rejection(failures::exceptions<rejected_error>(), kill_switch_kind));
  CHECK(handles_rejection(failures::exceptions_if([](const rejected_error& e) { return e.kind() == kill_switch_kind; }),
                          kill_switch_kind));
}

TEST_CASE("a | b handles what either handles", "[failures]") {
  const failures u = failures::exceptions<std::logic_error>() | failures::rejections({timeout_kind}) |
                     failures::results([](const int& v) { return v < 0; });
  CHECK(handles(u, std::invalid_argument{"x"}));
  CHECK_FALSE(handles(u, http_error{500}));
  CHECK(handles_rejection(u, timeout_kind));
  CHECK_FALSE(handles_rejection(u, rate_limited_kind));
  CHECK(handles_result(u, -1));
  CHECK_FALSE(handles_result(u, 1));
  CHECK(u.takes_result<int>());
  CHECK(handles(failures::none() | failures::any(), 7));
  CHECK(handles_rejection(failures::rejections({timeout_kind}) | failures::rejections({kill_switch_kind}),
                          kill_switch_kind));
}

TEST_CASE("except wins over everything, also inside a union", "[failures]") {
  const failures f = failures::any().except<std::logic_error>();
  CHECK_FALSE(f.handles_every_exception());
  CHECK_FALSE(handles(f, std::invalid_argument{"x"}));
  CHECK(handles(f, http_error{500}));
  CHECK(handles_rejection(f, timeout_kind));

  const failures g = failures::exceptions_if([](const http_error& e) {
                       return e.status >= 500;
                     }).except(failures::exceptions_if([](const http_error& e) { return e.status == 501; }));
  CHECK(handles(g, http_error{503}));
  CHECK_FALSE(handles(g, http_error{501}));

  const failures no_timeouts = failures::any().except(failures::rejections({timeout_kind}));
  CHECK_FALSE(handles_rejection(no_timeouts, timeout_kind));
  CHECK(handles_rejection(no_timeouts, circuit_open_kind));

  // Excepts accumulate, and stay with their own side of a union.
  const failures twice = failures::any().except<std::logic_error>().except<http_error>();
  CHECK_FALSE(handles(twice, std::logic_error{"x"}));
  CHECK_FALSE(handles(twice, http_error{500}));
  CHECK(handles(twice, 7));
  const failures u = failures::exceptions().except<std::logic_error>() | failures::exceptions<std::invalid_argument>();
  CHECK(handles(u, std::invalid_argument{"x"}));  // the right side has no exception
  CHECK_FALSE(handles(u, std::domain_error{"x"}));
  CHECK(handles(u, http_error{500}));

  const failures results = failures::results([](const int& v) {
                             return v < 0;
                           }).except(failures::results([](const int& v) { return v == -1; }));
  CHECK(handles_result(results, -2));
  CHECK_FALSE(handles_result(results, -1));
  CHECK(results.takes_result<int>());
}

TEST_CASE("a results predicate sees only its own type", "[failures]") {
  const failures f = failures::results([](const http_response& r) { return r.status == 503; });
  CHECK_FALSE(handles_result(f, 503));  // an int, not an http_response
  CHECK_FALSE(f.takes_result<int>());
  const failures two = f | failures::results([](const int& v) { return v == 503; });
  CHECK(handles_result(two, 503));
  CHECK(two.takes_result<int>());
  CHECK(two.result_type_names().find("http_response") != std::string::npos);
  CHECK(two.result_type_names().find("int") != std::string::npos);
}

TEST_CASE("when() sees exceptions and rejections through the failure view", "[failures]") {
  int asked = 0;
  const failures f = failures::when([&](const failure& x) {
    ++asked;
    return x.has_rejection() ? x.rejection().is(kill_switch_kind) : x.what() == "http 502";
  });
  CHECK(handles(f, http_error{502}));
  CHECK_FALSE(handles(f, http_error{503}));
  CHECK(handles_rejection(f, kill_switch_kind));
  CHECK_FALSE(handles_rejection(f, timeout_kind));
  CHECK_FALSE(handles_result(f, 502));  // values are for results() only
  CHECK(asked == 4);
  CHECK_FALSE(f.has_result_predicates());
}

TEST_CASE("the failure view", "[failures]") {
  const std::exception_ptr e = ptr(http_error{500});
  const failure ex{&e};
  CHECK(ex.has_exception());
  CHECK_FALSE(ex.is_result());
  CHECK(ex.is<std::runtime_error>());
  CHECK_FALSE(ex.is<std::logic_error>());
  CHECK(ex.what() == "http 500");
  CHECK(ex.result<int>() == nullptr);

  const rejection r{.kind = &circuit_open_kind, .source = "db"};
  const failure rej{&r};
  CHECK(rej.has_rejection());
  CHECK(rej.is<circuit_open_error>());
  CHECK(rej.is<rejected_error>());
  CHECK_FALSE(rej.is<std::logic_error>());

  const http_response resp{503};
  const failure res{&resp};
  CHECK(res.is_result());
  REQUIRE(res.result<http_response>() != nullptr);
  CHECK(res.result<http_response>()->status == 503);
  CHECK(res.result<int>() == nullptr);
  CHECK_FALSE(res.is<std::exception>());

  const outcome<int> o{5};
  CHECK(failure{o}.result<int>() != nullptr);
  CHECK(*failure{o}.result<int>() == 5);
  CHECK(failure{outcome<int>{r}}.has_rejection());
}
