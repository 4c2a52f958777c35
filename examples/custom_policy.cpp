// A policy of your own in a dozen lines, composed with retry.
//
// An emission-factor lookup over a flaky HTTP API: the service answers 503
// twice before it gives the factor for electricity, and 404 for a material
// it does not know. `attempt_logger` is written here, not in the library: a
// policy is any type with `execute(ctx, next)`. Listed after retry, it sits
// inside it and so sees every attempt. Time is virtual (manual_clock), so
// the story below is the same on every run and takes no real time.
#include <resilience/resilience.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;

// [custom-policy]
/// Counts the attempts that reach the service and logs each one's outcome.
struct attempt_logger {
  std::shared_ptr<std::atomic<int>> attempts = std::make_shared<std::atomic<int>>(0);

  template <class Next>
  auto execute(resilience::call_context& ctx, Next&& next) const {
    ++*attempts;
    auto result = next(ctx);
    const auto t = std::chrono::duration_cast<std::chrono::seconds>(ctx.now().time_since_epoch());
    std::printf("  t=%llds attempt %d: %s\n", static_cast<long long>(t.count()), ctx.attempt,
                result.has_value() ? "ok" : result.what().c_str());
    return result;
  }
};
// [custom-policy]

struct service_unavailable : std::runtime_error {
  service_unavailable() : std::runtime_error{"HTTP 503 Service Unavailable"} {}
};
struct factor_not_found : std::runtime_error {
  explicit factor_not_found(const std::string& activity) : std::runtime_error{"HTTP 404: no emission factor for '" + activity + "'"} {}
};

// The fake factor API: fails with 503 a fixed number of times per activity.
struct factor_api {
  std::shared_ptr<std::map<std::string, int>> outages =
      std::make_shared<std::map<std::string, int>>(std::map<std::string, int>{{"electricity", 2}});

  double operator()(const std::string& activity) const {
    if (activity != "electricity") throw factor_not_found{activity};
    if (int& left = (*outages)[activity]; left > 0) {
      --left;
      throw service_unavailable{};
    }
    return 0.233;  // kg CO2e per kWh
  }
};

int main() {
  resilience::manual_clock clock{resilience::manual_clock::auto_advance, 0s};
  const attempt_logger logger;

  // [custom-policy-compose]
  auto lookup = resilience::resilient{
      factor_api{},
      resilience::retry{{.max_retries = 3,
                         .base_delay = 1s,
                         .never_retry = resilience::exceptions<factor_not_found>{},
                         .on_retry = [](int attempt, resilience::duration delay, const resilience::retry_failure&) {
                           std::printf("  retry %d in %llds\n", attempt,
                                       static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(delay).count()));
                         }}},
      logger}.with_clock(clock);
  // [custom-policy-compose]

  std::printf("factor lookup: electricity\n");
  const double factor = lookup("electricity");
  std::printf("electricity: %.3f kg CO2e/kWh after %d attempts, at t=%llds\n", factor, logger.attempts->load(),
              static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(clock.now().time_since_epoch()).count()));

  std::printf("factor lookup: unobtainium\n");
  logger.attempts->store(0);
  auto missing = lookup.try_call("unobtainium");
  std::printf("failed fast: %s (%d attempt)\n", missing.what().c_str(), logger.attempts->load());
  return missing.has_exception() && factor == 0.233 ? 0 : 1;
}
