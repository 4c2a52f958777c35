// The README's first example: wrap a flaky emission-factor lookup in a
// retry, call it like the original, and look at an outcome without throwing.
// Runs on a manual clock in auto-advance mode, so the backoff takes no real time.
#include <resilience/resilience.hpp>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;

namespace {

resilience::manual_clock virtual_time{resilience::manual_clock::auto_advance};
const auto start = virtual_time.now();

double seconds_since_start() { return std::chrono::duration<double>(virtual_time.now() - start).count(); }

// A stand-in for an HTTP lookup that fails its first two calls.
int calls = 0;
double fetch_emission_factor(const std::string& activity) {
  ++calls;
  std::printf("  t=%.0fs  call %d: GET /factors/%s\n", seconds_since_start(), calls, activity.c_str());
  if (calls <= 2) throw std::runtime_error{"503 Service Unavailable"};
  return 0.233;  // kg CO2e per kWh
}

}  // namespace

int main() {
  // [quickstart]
  resilience::resilient fetch{fetch_emission_factor, resilience::retry{{.max_retries = 3, .base_delay = 1s}}};
  fetch.with_clock(virtual_time);  // leave this out to use the real steady clock

  double f = fetch("electricity");  // fails twice, then succeeds after 1 s and 2 s of backoff
  std::printf("factor %.3f after %d calls\n", f, calls);

  auto r = fetch.try_call("natural_gas");  // resilience::outcome<double>, never throws
  if (r) std::printf("natural_gas: %.3f\n", *r);
  // [quickstart]

  // [outcome]
  resilience::resilient broken{[](const std::string&) -> double { throw std::runtime_error{"factor API down"}; },
                               resilience::retry{{.max_retries = 2, .base_delay = 500ms}}};
  broken.with_clock(virtual_time);
  resilience::outcome<double> o = broken.try_call("steel");
  if (o.has_exception()) std::printf("steel failed: %s\n", o.what().c_str());
  try {
    broken("steel");  // the same failure, thrown: the callable's own exception type
  } catch (const std::runtime_error& e) {
    std::printf("caught: %s\n", e.what());
  }
  // [outcome]
  return f == 0.233 && r && !o ? 0 : 1;
}
