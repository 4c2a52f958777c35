// The seed's Example 2: an LLM provider call with 2 retries (2 s, then 4 s
// apart), a 30 s timeout per attempt, a cached fallback, and "[LLM
// unavailable]" whenever the platform has degraded below the full tier. The
// model is simulated and scripted; time is virtual (a sleep jumps the
// clock), so the story is the same every run and takes no real time.
#include <resilience/cache.hpp>
#include <resilience/degradation.hpp>
#include <resilience/fallback.hpp>
#include <resilience/presets.hpp>
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>
#include <resilience/timeout.hpp>

#include <chrono>
#include <cstdio>
#include <deque>
#include <stdexcept>
#include <stop_token>
#include <string>

using namespace std::chrono_literals;
using resilience::tier;

namespace {

resilience::manual_clock virtual_time{resilience::manual_clock::auto_advance};
const auto start = virtual_time.now();

double now_s() { return std::chrono::duration<double>(virtual_time.now() - start).count(); }

// What the simulated model does on each request, in order.
enum class behaviour { answer, overloaded, hang };
std::deque<behaviour> script;
int requests = 0;

struct provider_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The provider: answers, fails with HTTP 529, or hangs until it is asked
// to stop (it takes the call's stop_token, so a timeout can cancel it).
std::string complete(std::stop_token stop, const std::string& prompt) {
  ++requests;
  const behaviour b = script.empty() ? behaviour::answer : script.front();
  if (!script.empty()) script.pop_front();
  std::printf("[t=%5.1fs]   request %d: ", now_s(), requests);
  switch (b) {
    case behaviour::answer:
      virtual_time.sleep_until(virtual_time.now() + 2s, stop);
      std::printf("answered in 2 s\n");
      return "LLM: '" + prompt + "' -> purchased goods dominate; steel is 41% of category 1";
    case behaviour::overloaded: std::printf("HTTP 529 overloaded\n"); throw provider_error{"HTTP 529 overloaded"};
    case behaviour::hang:
      std::printf("no answer...\n");
      while (!stop.stop_requested()) virtual_time.sleep_until(virtual_time.now() + 1s, stop);
      std::printf("[t=%5.1fs]   request %d: cancelled by the timeout\n", now_s(), requests);
      throw provider_error{"cancelled"};
  }
  return {};
}

}  // namespace

int main() {
  resilience::degradation_manager health{{.clock = virtual_time}};
  health.on_tier_change([](tier from, tier to) {
    std::printf("[t=%5.1fs] tier %s -> %s\n", now_s(), std::string{to_string(from)}.c_str(),
                std::string{to_string(to)}.c_str());
  });
  resilience::result_cache<std::string, std::string> answers{{.ttl = 1h, .clock = virtual_time}};

  resilience::fallback cached_answer{resilience::cached{answers},
                                     {.on_activated = [](const resilience::fallback_info& i) {
                                       std::printf("           fallback: cached answer, %s old (%s)\n",
                                                   resilience::format_duration(*i.age).c_str(), i.cause.what().c_str());
                                     }}};
  resilience::resilient ask{complete,
                            resilience::degradation_guard{
                                health, tier::full, std::string{"[LLM unavailable]"}},  // below full: do not even try
                            cached_answer,                                              // then the last good answer
                            resilience::retry{{.max_retries = 2, .base_delay = 2s}},    // 2 retries: 2 s, 4 s
                            resilience::timeout{resilience::operation_type::llm_inference}};  // 30 s per attempt
  ask.with_clock(virtual_time);

  const std::string prompt = "summarise Scope 3 category 1";
  auto run = [&](const char* title) {
    std::printf("[t=%5.1fs] %s\n", now_s(), title);
    const std::string answer = ask(prompt);
    std::printf("[t=%5.1fs]   => %s\n", now_s(), answer.c_str());
  };

  script = {behaviour::answer};
  run("1. the model answers");

  script = {behaviour::overloaded, behaviour::answer};
  run("2. overloaded once: retried after 2 s");

  script = {behaviour::hang, behaviour::overloaded, behaviour::hang};
  run("3. hangs, fails, hangs: 3 attempts, then the cache");

  std::printf("[t=%5.1fs] 4. the health monitor reports the provider down\n", now_s());
  health.update_health("llm_api", false, 31s, "inference timed out");
  const int before = requests;
  run("   a call below the full tier");
  std::printf("           requests sent to the model: %d\n", requests - before);

  std::printf("[t=%5.1fs] 5. three healthy probes bring the tier back\n", now_s());
  for (int i = 0; i < 3; ++i) health.update_health("llm_api", true, 2s);
  script = {behaviour::answer};
  run("   the model answers again");

  try {
    script = {behaviour::overloaded, behaviour::overloaded, behaviour::overloaded};
    ask(std::string{"a prompt never answered before"});
  } catch (const provider_error& e) {
    std::printf("[t=%5.1fs] 6. nothing cached for a new prompt: the caller sees '%s'\n", now_s(), e.what());
  }
  return 0;
}
