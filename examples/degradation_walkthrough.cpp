// Graceful degradation, step by step: the services of an emissions platform
// fail and recover, the tier follows, and guarded features are served,
// served from a fallback, or refused. Virtual time, scripted health reports:
// the same story every run.
#include <resilience/circuit_breaker.hpp>
#include <resilience/degradation.hpp>
#include <resilience/resilient.hpp>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;
using resilience::tier;

namespace {

resilience::manual_clock virtual_time;
const auto start = virtual_time.now();

double seconds_since_start() { return std::chrono::duration<double>(virtual_time.now() - start).count(); }

void say(const char* what) { std::printf("[t=%5.0fs] %s\n", seconds_since_start(), what); }

// The platform's features, each a plain function.
std::string narrate(const std::string& company) { return "LLM summary of " + company + "'s footprint"; }
double fetch_fresh_factor(const std::string& activity) { return activity == "electricity" ? 0.233 : 2.68; }
int save_calculation(double tonnes) { return static_cast<int>(tonnes * 10); }
std::string read_saved_report(int id) { return "report #" + std::to_string(id); }

}  // namespace

int main() {
  // The manager: default services (llm_api -> core, factor_api and erp_api ->
  // read_only, database -> maintenance), recovery after 3 healthy reports.
  resilience::degradation_manager health{{.clock = virtual_time}};
  health.on_tier_change([](tier from, tier to) {
    std::printf("[t=%5.0fs] *** tier %s -> %s\n", seconds_since_start(), std::string{to_string(from)}.c_str(),
                std::string{to_string(to)}.c_str());
  });

  // Each feature states the worst tier it can run at.
  resilience::resilient narrative{narrate,
                                  resilience::degradation_guard{health, tier::full, std::string{"[LLM unavailable]"}}};
  resilience::resilient fresh_factor{fetch_fresh_factor, resilience::degradation_guard{health, tier::core}};
  resilience::resilient save{save_calculation, resilience::degradation_guard{health, tier::core}};
  resilience::resilient read_report{read_saved_report, resilience::degradation_guard{health, tier::read_only}};

  auto try_everything = [&] {
    std::printf("    narrative:    %s\n", narrative(std::string{"Acme"}).c_str());
    auto f = fresh_factor.try_call(std::string{"electricity"});
    if (f) std::printf("    fresh factor: %.3f kgCO2e/kWh\n", *f);
    else std::printf("    fresh factor: refused (%s)\n", f.what().c_str());
    try {
      std::printf("    save:         saved as #%d\n", save(12.5));
    } catch (const resilience::degraded_error& e) {
      std::printf("    save:         refused at tier %s (needs %s or better)\n",
                  std::string{to_string(e.current())}.c_str(), std::string{to_string(e.required())}.c_str());
    }
    auto r = read_report.try_call(125);
    std::printf("    read report:  %s\n", r ? r->c_str() : ("refused (" + r.what() + ")").c_str());
  };

  say("all services healthy");
  try_everything();

  virtual_time.advance(30s);
  say("LLM provider times out after 31 s");
  health.update_health("llm_api", false, 31s, "inference timed out");
  try_everything();

  virtual_time.advance(30s);
  say("ERP answers, but in 12 s (threshold 10 s)");
  health.update_health("erp_api", true, 12s);
  try_everything();

  virtual_time.advance(30s);
  say("database connection refused");
  health.update_health("database", false, 0s, "connection refused");
  try_everything();

  virtual_time.advance(30s);
  say("database answers again: three healthy reports before it counts");
  for (int i = 1; i <= 3; ++i) {
    health.update_health("database", true, 40ms);
    std::printf("    healthy report %d: tier %s\n", i, std::string{to_string(health.current_tier())}.c_str());
  }

  virtual_time.advance(30s);
  say("ERP and LLM recover");
  for (int i = 0; i < 3; ++i) {
    health.update_health("erp_api", true, 800ms);
    health.update_health("llm_api", true, 2s);
  }
  try_everything();

  // A circuit breaker can report for a service: while it is open, the
  // factor API counts as down.
  resilience::circuit_breaker factor_breaker{
      {.name = "factor_http", .clock = virtual_time, .fail_max = 5, .break_duration = 60s}};
  health.bind(factor_breaker, "factor_api");
  virtual_time.advance(30s);
  say("factor API fails 5 times in a row: its breaker opens");
  for (int i = 0; i < 5; ++i) (void)factor_breaker.try_call([]() -> double { throw std::runtime_error{"HTTP 503"}; });
  try_everything();

  say("waiting out the breaker's 60 s break");
  virtual_time.advance(60s);
  say("the breaker lets a trial call through");
  std::printf("    breaker: %s\n", std::string{to_string(factor_breaker.state())}.c_str());
  (void)factor_breaker.try_call([] { return 0.233; });
  std::printf("    trial succeeded, breaker: %s\n", std::string{to_string(factor_breaker.state())}.c_str());
  try_everything();

  say("health snapshot");
  for (const auto& s : health.snapshot().services)
    std::printf("    %-10s implies %-11s %-9s last %6.3fs  since t=%.0fs%s%s\n", s.name.c_str(),
                std::string{to_string(s.implies)}.c_str(), s.healthy ? "healthy" : "UNHEALTHY",
                std::chrono::duration<double>(s.last_response_time).count(),
                std::chrono::duration<double>(s.since - start).count(),
                s.last_error.empty() ? "" : "  error: ", s.last_error.c_str());
  return health.current_tier() == tier::full ? 0 : 1;
}
