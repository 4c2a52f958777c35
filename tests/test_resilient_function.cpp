#include <resilience/circuit_breaker.hpp>
#include <resilience/coro.hpp>
#include <resilience/executor.hpp>
#include <resilience/fallback.hpp>
#include <resilience/resilient.hpp>
#include <resilience/resilient_function.hpp>
#include <resilience/retry.hpp>
#include <resilience/timeout.hpp>

#include <catch2/catch.hpp>

#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "support/coro.hpp"

using namespace resilience;
using namespace support;
using namespace std::chrono_literals;

namespace {

struct erp_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A class keeping a resilient call as a member, behind a nameable type.
class factor_client {
 public:
  explicit factor_client(int& calls)
      : fetch_{resilient{[&calls](const std::string& activity) {
                           if (++calls == 1) throw erp_error{"busy"};
                           return static_cast<double>(activity.size()) / 10;
                         },
                         retry{{.max_retries = 2, .base_delay = 0s}}}} {}
  double factor(const std::string& activity) const { return fetch_(activity); }
  const resilient_function<double(const std::string&)>& fetch() const { return fetch_; }

 private:
  resilient_function<double(const std::string&)> fetch_;
};

template <class O>
spawned await_try(const resilient_function<int(int)>& f, std::optional<O>& got, int x) {
  got.emplace(co_await f.co_try_call(x));
}

spawned await_value(const resilient_function<int(int)>& f, std::optional<int>& got, std::exception_ptr& error, int x) {
  try {
    got.emplace(co_await f.co_call(x));
  } catch (...) {
    error = std::current_exception();
  }
}

}  // namespace

static_assert(!std::is_copy_constructible_v<resilient_function<int(int)>>);
static_assert(std::is_nothrow_move_constructible_v<resilient_function<int(int)>>);

TEST_CASE("resilient_function keeps a resilient call as a class member", "[resilient_function]") {
  int calls = 0;
  const factor_client client{calls};
  CHECK(client.factor("electricity") == Approx(1.1));
  CHECK(calls == 2);  // the retry is inside
  const outcome<double> o = client.fetch().try_call("steel");
  REQUIRE(o.has_value());
  CHECK(*o == Approx(0.5));
}

TEST_CASE("resilient_function: try_call never throws; operator() rethrows the same object", "[resilient_function]") {
  auto boom = std::make_shared<erp_error>("down");
  resilient_function<int(int)> f = resilient{[boom](int) -> int { throw boom; }, retry{{.max_retries = 0}}};
  const outcome<int> o = f.try_call(1);
  REQUIRE(o.has_exception());
  try {
    f(1);
    FAIL("no exception");
  } catch (const std::shared_ptr<erp_error>& e) {
    CHECK(e == boom);
  }
}

TEST_CASE("resilient_function converts the result type and takes per-call options", "[resilient_function]") {
  std::stop_source stop;
  resilient_function<long(int)> f = resilient{[](std::stop_token st, int x) { return st.stop_requested() ? -1 : x; }};
  CHECK(f(4) == 4L);
  stop.request_stop();
  CHECK(f.call_with({.stop = stop.get_token()}, 4) == -1L);
  CHECK(*f.try_call_with({.stop = stop.get_token()}, 4) == -1L);
}

TEST_CASE("resilient_function moves, and an empty one says so", "[resilient_function]") {
  resilient_function<int(int)> a = resilient{[](int x) { return x + 1; }, fallback{default_value{0}}};
  resilient_function<int(int)> b;
  CHECK(!b);
  b = std::move(a);
  CHECK(b);
  CHECK(!a);  // NOLINT(bugprone-use-after-move): moved-from is empty
  CHECK(b(1) == 2);
}

TEST_CASE("resilient_function::async runs on the executor", "[resilient_function]") {
  manual_executor ex;
  resilient r{[](int x) { return x * 3; }, retry{}};
  r.with_executor(ex);
  resilient_function<int(int)> f = std::move(r);
  auto fut = f.async(5);
  CHECK(!fut.is_ready());
  ex.run_all();
  CHECK(fut.get() == 15);
}

TEST_CASE("resilient_function::co_call: inline without waiting policies, on the executor otherwise",
          "[resilient_function][coro]") {
  circuit_breaker breaker{{.fail_max = 5}};
  resilient_function<int(int)> quick = resilient{[](int x) { return x + 1; }, breaker};
  CHECK(quick.runs_inline());
  std::optional<int> got;
  std::exception_ptr error;
  await_value(quick, got, error, 1);
  REQUIRE(got);
  CHECK(*got == 2);

  manual_executor ex;
  resilient r{[](int x) -> int {
                if (x < 0) throw erp_error{"negative"};
                return x * 2;
              },
              retry{{.max_retries = 0}}};
  r.with_executor(ex);
  resilient_function<int(int)> slow = std::move(r);
  CHECK(!slow.runs_inline());
  got.reset();
  await_value(slow, got, error, 4);
  CHECK(!got);
  ex.run_all();
  REQUIRE(got);
  CHECK(*got == 8);

  std::optional<outcome<int>> o;
  await_try(slow, o, -1);
  ex.run_all();
  REQUIRE(o);
  CHECK(o->has_exception());
}
