// The policy protocol: a user policy written against policy.hpp alone runs
// in a pipeline, synchronously and asynchronously, and the concept tells
// policies from other types.
#include <resilience/policy.hpp>  // everything the policies below need

#include <atomic>
#include <memory>
#include <stdexcept>
#include <utility>

namespace {

namespace r = resilience;

// Counts calls and failures, in both forms (the async one keeps no thread).
struct counting {
  std::shared_ptr<std::atomic<int>> calls = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<std::atomic<int>> async_calls = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<std::atomic<int>> failures = std::make_shared<std::atomic<int>>(0);

  template <class Next>
  auto execute(r::call_context& ctx, Next&& next) const {
    ++*calls;
    auto o = next(ctx);
    if (!o.has_value()) ++*failures;
    return o;
  }

  template <class T, class Next, class Call>
  void execute_async(r::call_context& ctx, Next& next, const Call&, r::async_callback<T> done) const {
    ++*async_calls;
    next(ctx, r::async_callback<T>{[f = failures, done = std::move(done)](r::outcome<T> o) mutable {
           if (!o.has_value()) ++*f;
           done(std::move(o));
         }});
  }
};

// An async form that promises done exactly once and never throws (noexcept):
// the pipeline runs it as it is.
struct passing_noexcept {
  std::shared_ptr<std::atomic<int>> async_calls = std::make_shared<std::atomic<int>>(0);

  template <class Next>
  auto execute(r::call_context& ctx, Next&& next) const {
    return next(ctx);
  }
  template <class T, class Next, class Call>
  void execute_async(r::call_context& ctx, Next& next, const Call&, r::async_callback<T> done) const noexcept {
    ++*async_calls;
    next(ctx, std::move(done));
  }
};

// Learns the call's arguments through the call_view (third argument).
struct first_argument_doubled_on_failure {
  template <class Next, class Call>
  auto execute(r::call_context& ctx, Next&& next, const Call& call) const {
    auto o = next(ctx);
    if constexpr (std::tuple_size_v < std::remove_cvref_t < decltype(call.arguments()) >>> 0) {
      if (!o.has_value()) return decltype(o){std::in_place, 2 * std::get<0>(call.arguments())};
    }
    return o;
  }
};

struct not_a_policy {};

struct returns_int {
  template <class Next>
  int execute(r::call_context&, Next&&) const {
    return 0;
  }
};

}  // namespace

#include <catch2/catch.hpp>

#include <resilience/clock.hpp>
#include <resilience/executor.hpp>
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>

TEST_CASE("the policy concept accepts policies and refuses other types", "[policy]") {
  STATIC_REQUIRE(r::policy<counting, int>);
  STATIC_REQUIRE(r::policy<counting, void>);
  STATIC_REQUIRE(r::policy<passing_noexcept, double>);
  STATIC_REQUIRE(r::policy<first_argument_doubled_on_failure, int>);
  STATIC_REQUIRE(r::policy<r::retry, int>);
  STATIC_REQUIRE_FALSE(r::policy<not_a_policy, int>);
  STATIC_REQUIRE_FALSE(r::policy<returns_int, int>);
  STATIC_REQUIRE_FALSE(r::policy<int, int>);
  // The next step must itself return an outcome.
  STATIC_REQUIRE_FALSE(r::policy_for<counting, int (*)(r::call_context&)>);
}

TEST_CASE("a user policy runs in the sync pipeline", "[policy]") {
  counting c;
  int n = 0;
  r::resilient f{[&n](int x) {
                   if (++n == 1) throw std::runtime_error{"first"};
                   return x;
                 },
                 r::retry{{.max_retries = 1, .base_delay = r::duration::zero()}}, c};
  REQUIRE(f(7) == 7);
  REQUIRE(*c.calls == 2);
  REQUIRE(*c.failures == 1);
  REQUIRE(*c.async_calls == 0);
}

TEST_CASE("a user policy's call_view gives the call's arguments", "[policy]") {
  r::resilient f{[](int) -> int { throw std::runtime_error{"down"}; }, first_argument_doubled_on_failure{}};
  REQUIRE(f(21) == 42);
}

TEST_CASE("a user policy's async form runs under async(), inside retry's async loop", "[policy]") {
  counting c;
  r::manual_executor ex;
  r::manual_clock clk{r::manual_clock::auto_advance};
  int n = 0;
  auto f = r::resilient{[&n](int x) {
                          if (++n < 3) throw std::runtime_error{"not yet"};
                          return x;
                        },
                        r::retry{{.max_retries = 3, .base_delay = std::chrono::seconds{1}}}, c}
               .with_executor(ex)
               .with_clock(clk);
  auto fut = f.async(5);
  ex.run_all();
  REQUIRE(fut.get() == 5);
  REQUIRE(*c.async_calls == 3);  // one per attempt: retry's loop starts the inner async step each time
  REQUIRE(*c.failures == 2);
  REQUIRE(*c.calls == 0);  // the sync form never ran
}

TEST_CASE("a noexcept async form runs as the policy wrote it", "[policy]") {
  passing_noexcept p;
  r::manual_executor ex;
  auto f = r::resilient{[](int x) { return x + 1; }, p}.with_executor(ex);
  auto fut = f.async(1);
  ex.run_all();
  REQUIRE(fut.get() == 2);
  REQUIRE(*p.async_calls == 1);
}
