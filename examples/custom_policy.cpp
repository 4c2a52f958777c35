// Policies of your own, composed with the library's.
//
// An emission-factor lookup over a flaky HTTP API: the service answers 503
// twice before it gives the factor for electricity, and 404 for a material
// it does not know. `attempt_logger` is written here, not in the library: a
// policy is any type with `execute(ctx, next)`. Listed after retry, it sits
// inside it and so sees every attempt. Time is virtual (manual_clock), so
// the story below is the same on every run and takes no real time.
//
// Then a kill switch, also written here: an operator turns the factor API
// off, and the switch refuses calls with a rejection kind of its own
// ("kill_switch"). Retry's and fallback's `handle` name that kind, the JSON log
// prints its message and its own events, and /metrics counts them, with no
// library header naming it.
#include <resilience/logging.hpp>
#include <resilience/resilience.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

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

// [kill-switch]
/// The kill switch's own rejection kind: one static instance, compared by address.
struct kill_switch_kind_t final : resilience::rejection_kind {
  constexpr kill_switch_kind_t() : rejection_kind{"kill_switch"} {}
  std::string message(const resilience::rejection& r) const override {
    return "kill switch '" + std::string{r.source} + "' is off";
  }
};
inline constexpr kill_switch_kind_t kill_switch_kind{};

/// Its refusals as events, logged as JSON and counted in /metrics as
/// kill_switch_rejections_total{name}: a family and an event kind of its own.
inline constexpr resilience::metric_family kill_switch_rejections{
    "kill_switch_rejections_total", resilience::metric_type::counter, "Calls a kill switch refused."};
inline constexpr resilience::metric_family kill_switch_off_family{"kill_switch_off", resilience::metric_type::gauge,
                                                                  "1 while a kill switch refuses calls, else 0."};
inline const resilience::metric_families kill_switch_families{kill_switch_rejections, kill_switch_off_family};
inline constexpr resilience::event_metric kill_switch_rejected_metrics[] = {
    {&kill_switch_rejections, {{{"name", "source"}}}}};
inline constexpr resilience::event_kind kill_switch_rejected_event{
    "kill_switch_rejected",
    resilience::log_level::warning,
    {.source_key = "name", .operation = true, .metrics = kill_switch_rejected_metrics}};

/// Refuses every call while an operator holds the switch off: a rejection
/// value (no throw, no allocation), thrown at the API edge as a
/// resilience::rejected_error whose kind() is kill_switch_kind.
struct kill_switch {
  std::string name;
  std::shared_ptr<std::atomic<bool>> off = std::make_shared<std::atomic<bool>>(false);

  template <class Next>
  auto execute(resilience::call_context& ctx, Next&& next) const {
    using result = std::remove_cvref_t<std::invoke_result_t<Next&, resilience::call_context&>>;
    if (off->load()) {
      resilience::emit(nullptr, [&] {  // no hub of its own: global_events() only
        resilience::event e{kill_switch_rejected_event, name};
        e.at(ctx.now()).with_operation(ctx.operation);
        return e;
      });
      return result{resilience::rejection{.kind = &kill_switch_kind, .retry_after = 1s, .source = name}};
    }
    return next(ctx);
  }
};
// [kill-switch]

// [kill-switch-collect]
/// Its state, read at each scrape once a metrics_registry watches it (found by ADL).
void collect_metrics(const kill_switch& s, resilience::metric_snapshot& out) {
  out.add("kill_switch_off", resilience::metric_type::gauge, {}, {{"name", s.name}}, s.off->load() ? 1.0 : 0.0);
}
// [kill-switch-collect]

struct service_unavailable : std::runtime_error {
  service_unavailable() : std::runtime_error{"HTTP 503 Service Unavailable"} {}
};
struct factor_not_found : std::runtime_error {
  explicit factor_not_found(const std::string& activity)
      : std::runtime_error{"HTTP 404: no emission factor for '" + activity + "'"} {}
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
  auto lookup =
      resilience::resilient{
          factor_api{},
          resilience::retry{{.max_retries = 3,
                             .base_delay = 1s,
                             .handle = resilience::failures::any().except<factor_not_found>(),
                             .on_retry =
                                 [](int attempt, resilience::duration delay, const resilience::failure&) {
                                   std::printf("  retry %d in %llds\n", attempt,
                                               static_cast<long long>(
                                                   std::chrono::duration_cast<std::chrono::seconds>(delay).count()));
                                 }}},
          logger}
          .with_clock(clock);
  // [custom-policy-compose]

  std::printf("factor lookup: electricity\n");
  const double factor = lookup("electricity");
  std::printf(
      "electricity: %.3f kg CO2e/kWh after %d attempts, at t=%llds\n", factor, logger.attempts->load(),
      static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(clock.now().time_since_epoch()).count()));

  std::printf("factor lookup: unobtainium\n");
  logger.attempts->store(0);
  auto missing = lookup.try_call("unobtainium");
  std::printf("failed fast: %s (%d attempt)\n", missing.what().c_str(), logger.attempts->load());

  // The kill switch: retry waits out its retry_after for this kind only, and
  // a fallback answers with a default when the switch stays off.
  std::printf("kill switch\n");
  resilience::metrics_registry metrics;  // counts every policy's events, the switch's too
  const kill_switch guard{"factor_api"};
  metrics.watch(guard);  // and reads its state at each scrape
  const auto sub = resilience::global_events().subscribe(resilience::json_logger{
      [](std::string_view line) { std::printf("  log %.*s\n", static_cast<int>(line.size()), line.data()); },
      {.now = [] { return std::chrono::system_clock::time_point{}; }}});
  const factor_api healthy_api{std::make_shared<std::map<std::string, int>>()};  // no more 503s
  bool operator_turns_it_on = true;
  // [kill-switch-compose]
  auto guarded =
      resilience::resilient{healthy_api,
                            resilience::fallback{resilience::default_value{0.0},
                                                 {.handle = resilience::failures::rejections({kill_switch_kind})}},
                            resilience::retry{{.max_retries = 1,
                                               .base_delay = 1s,
                                               .handle = resilience::failures::exceptions() |
                                                         resilience::failures::rejections({kill_switch_kind}),
                                               .on_retry =
                                                   [&](int, resilience::duration, const resilience::failure&) {
                                                     if (operator_turns_it_on) guard.off->store(false);
                                                   }}},
                            guard}
          .with_clock(clock);
  // [kill-switch-compose]
  guard.off->store(true);
  // The rejection's source views the policy's name: keep the wrapper (and so
  // its copy of the switch) alive while the outcome is read.
  const auto unguarded_retry = resilience::resilient{healthy_api, guard};
  auto refused = unguarded_retry.try_call("electricity");
  std::printf("refused: %s (kind %s)\n", refused.what().c_str(),
              refused.has_rejection() ? std::string{refused.rejection().kind->name()}.c_str() : "none");
  try {
    refused.value();
  } catch (const resilience::rejected_error& e) {
    std::printf("thrown as rejected_error, kind %s, source %s\n", std::string{e.kind().name()}.c_str(),
                e.source().c_str());
  }
  std::printf("switch off, turned on during the retry's wait:\n");
  const double retried_factor = guarded("electricity");
  std::printf("electricity: %.3f (retried)\n", retried_factor);
  std::printf("switch off and left off:\n");
  operator_turns_it_on = false;
  guard.off->store(true);
  const double fallback_factor = guarded("electricity");
  std::printf("electricity: %.3f (the fallback's default)\n", fallback_factor);
  resilience::global_events().unsubscribe(sub);
  // /metrics counts the switch's refusals and shows its state, declared in this file only.
  const std::string scrape = metrics.render();
  for (std::size_t at = 0, end; at < scrape.size(); at = end + 1) {
    end = scrape.find('\n', at);
    const std::string_view line{scrape.data() + at, end - at};
    if (line.find("kill_switch") != std::string_view::npos)
      std::printf("metrics %.*s\n", static_cast<int>(line.size()), line.data());
  }

  return missing.has_exception() && factor == 0.233 && refused.has_rejection() &&
                 refused.rejection().is(kill_switch_kind) && retried_factor == 0.233 && fallback_factor == 0.0
             ? 0
             : 1;
}
