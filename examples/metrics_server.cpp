// Serves the library's Prometheus metrics at http://127.0.0.1:<port>/metrics
// (cpp-httplib) while a simulated Scope 3 workload runs: emission-factor
// lookups through a rate limiter and a breaker, an ERP intake that fails
// often, an LLM that is sometimes too slow, and a degradation manager fed by
// the breakers.
//
//   metrics_server                          run ~1 s, scrape itself once, print a summary
//   metrics_server --port 0 --port-file F   serve on a free port (written to F) until
//                  [--seconds N]            GET /quit or N seconds (default 60) pass
//
// Loopback only: it binds 127.0.0.1 and nothing else.
#include <resilience/bulkhead.hpp>
#include <resilience/circuit_breaker.hpp>
#include <resilience/degradation.hpp>
#include <resilience/fallback.hpp>
#include <resilience/metrics.hpp>
#include <resilience/rate_limit.hpp>
#include <resilience/resilient.hpp>

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace resilience;
using namespace std::chrono_literals;

namespace {

struct settings {
  int port = 0;            // 0: any free port
  std::string port_file;   // where to write the port once listening
  int seconds = 60;        // serve at most this long
  bool self_check = true;  // no flags: scrape ourselves once and exit
};

settings parse_args(int argc, char** argv) {
  settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument{std::string{a} + " needs a value"};
      return argv[++i];
    };
    if (a == "--port") s.port = std::stoi(value());
    else if (a == "--port-file") s.port_file = value();
    else if (a == "--seconds") s.seconds = std::stoi(value());
    else throw std::invalid_argument{"unknown argument " + std::string{a}};
    s.self_check = false;
  }
  return s;
}

// A small deterministic generator per worker (no global RNG).
struct lcg {
  std::uint64_t state;
  std::uint32_t next() noexcept {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<std::uint32_t>(state >> 33);
  }
  bool chance(unsigned percent) noexcept { return next() % 100 < percent; }
};

// The simulated services and the calls the platform makes to them.
class workload {
 public:
  explicit workload(metrics_registry& metrics) {
    limits_.configure("factor_api", {.requests_per_second = 1000, .burst_size = 50});
    metrics.watch(limits_);
    metrics.watch(health_);
    // These calls take milliseconds: timing each one (two clock reads) is
    // noise next to that, so both breakers feed the duration histogram.
    metrics.watch(factor_breaker_, call_durations::always);
    metrics.watch(erp_breaker_, call_durations::always);
    metrics.watch(database_);
  }

  void start(int workers) {
    for (int w = 0; w < workers; ++w)
      threads_.emplace_back(
          [this, w](std::stop_token stop) { run(stop, lcg{0x5c09e3ULL + static_cast<std::uint64_t>(w)}); });
  }
  void stop() { threads_.clear(); }  // jthread: request stop, join
  std::uint64_t calls() const noexcept { return calls_.load(std::memory_order_relaxed); }

 private:
  void run(const std::stop_token& stop, lcg rng) {
    auto lookup = resilient{[&] {
                              if (rng.chance(5)) throw std::runtime_error{"factor API: HTTP 503"};
                              return 0.233;  // kg CO2e per kWh
                            },
                            fallback{default_value{0.0}}, rate_limit{limits_, "factor_api"}, factor_breaker_};
    auto intake = resilient{[&] {
                              std::this_thread::sleep_for(std::chrono::microseconds{200 + rng.next() % 800});
                              if (rng.chance(40)) throw std::runtime_error{"ERP: 502 Bad Gateway"};
                              return 17;  // purchase orders
                            },
                            erp_breaker_};
    auto query = resilient{[&] {
                             std::this_thread::sleep_for(std::chrono::microseconds{rng.next() % 500});
                             return 3;  // rows
                           },
                           database_};
    while (!stop.stop_requested()) {
      (void)lookup.try_call_with({.operation = "factor_lookup"});
      (void)intake.try_call_with({.operation = "erp_intake"});
      (void)query.try_call_with({.operation = "database_query"});
      health_.update_health("erp_api", erp_breaker_.state() == circuit_state::closed, {}, "ERP breaker not closed");
      health_.update_health("llm_api", !rng.chance(10), std::chrono::milliseconds{rng.next() % 50});
      calls_.fetch_add(3, std::memory_order_relaxed);
      std::this_thread::sleep_for(1ms);
    }
  }

  rate_limiter limits_;
  degradation_manager health_{{.recover_after_reports = 2}};
  circuit_breaker factor_breaker_{{.name = "factor_api", .fail_max = 5, .break_duration = 200ms}};
  circuit_breaker erp_breaker_{{.name = "erp_api", .fail_max = 3, .break_duration = 100ms}};
  bulkhead database_{{.name = "database", .max_concurrent_calls = 1}};  // two workers share one connection
  std::atomic<std::uint64_t> calls_{0};
  std::vector<std::jthread> threads_;  // last: stopped and joined before the policies go
};

// Writes the port to `path` atomically (a reader never sees half a number).
void write_port_file(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out{tmp};
    out << port << '\n';
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace

int main(int argc, char** argv) {
  settings cfg;
  try {
    cfg = parse_args(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "metrics_server: %s\n", e.what());
    return 2;
  }

  metrics_registry metrics;  // counts every policy's events through global_events()
  workload work{metrics};

  httplib::Server server;
  std::mutex mutex;
  std::condition_variable quit_cv;
  bool quit = false;
  server.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.render(), std::string{metrics_registry::content_type}.c_str());
  });
  server.Get("/quit", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content("bye\n", "text/plain");
    std::lock_guard lock{mutex};
    quit = true;
    quit_cv.notify_all();
  });

  const int port = cfg.port == 0 ? server.bind_to_any_port("127.0.0.1")
                                 : (server.bind_to_port("127.0.0.1", cfg.port) ? cfg.port : -1);
  if (port <= 0) {
    std::fprintf(stderr, "metrics_server: cannot bind 127.0.0.1:%d\n", cfg.port);
    return 1;
  }
  std::thread listener{[&] { server.listen_after_bind(); }};
  std::printf("listening on http://127.0.0.1:%d/metrics\n", port);
  std::fflush(stdout);
  if (!cfg.port_file.empty()) write_port_file(cfg.port_file, port);

  work.start(2);
  int rc = 0;
  if (cfg.self_check) {
    std::this_thread::sleep_for(1s);  // let the workload run; this is a demo, not a test
    httplib::Client client{"127.0.0.1", port};
    client.set_read_timeout(5, 0);
    const auto res = client.Get("/metrics");
    if (!res || res->status != 200) {
      std::fprintf(stderr, "metrics_server: scraping itself failed\n");
      rc = 1;
    } else {
      std::printf("GET /metrics: %d, %zu bytes, Content-Type: %s\n", res->status, res->body.size(),
                  res->get_header_value("Content-Type").c_str());
      for (const std::string_view family :
           {"greenlang_circuit_breaker_calls_total", "greenlang_rate_limiter_requests_total",
            "greenlang_degradation_tier", "greenlang_fallback_activations_total"})
        std::printf("has %.*s: %s\n", static_cast<int>(family.size()), family.data(),
                    res->body.find("\n" + std::string{family}) != std::string::npos ? "yes" : "no");
    }
  } else {
    std::unique_lock lock{mutex};
    quit_cv.wait_for(lock, std::chrono::seconds{cfg.seconds}, [&] { return quit; });
  }
  work.stop();
  server.stop();
  listener.join();
  std::printf("workload made %llu calls\n", static_cast<unsigned long long>(work.calls()));
  return rc;
}
