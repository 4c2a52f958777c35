// Three worker processes share one fleet-wide quota on Redis
// (resilience/redis.hpp): each asks as fast as it likes, Redis decides, and
// together they never pass the quota. Starts its own redis-server (from
// PATH) on a unix socket in a temporary directory, and stops it at the end.
#include <resilience/redis.hpp>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

using namespace std::chrono_literals;
namespace redis = resilience::redis;

namespace {

constexpr double rate = 20;  // the fleet's quota: 20 per second...
constexpr int burst = 10;    // ...with bursts of 10
constexpr int workers = 3;
constexpr auto run_for = 1s;

// One worker: asks for a permit every millisecond for run_for; returns its grants.
int work(const std::string& socket) {
  auto conn = std::make_shared<redis::connection>(redis::connection_options{.unix_socket = socket});
  redis::rate_limiter limits{
      conn, "emission_factors", {.limit = {.requests_per_second = rate, .burst_size = burst}, .prefix = "example:"}};
  int granted = 0;
  const auto end = std::chrono::steady_clock::now() + run_for;
  while (std::chrono::steady_clock::now() < end) {
    if (limits.try_acquire("acme", 1)) ++granted;  // here: call the upstream
    std::this_thread::sleep_for(1ms);
  }
  return granted;
}

}  // namespace

int main() {
  const char* server = "redis-server";
  char dir_template[] = "/tmp/fleet-rate-limit-XXXXXX";
  if (!::mkdtemp(dir_template)) return 1;
  const std::string dir = dir_template, socket = dir + "/redis.sock";
  const pid_t redis_pid = ::fork();
  if (redis_pid == 0) {
    const int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::dup2(null, 2);
    ::execlp(server, server, "--port", "0", "--unixsocket", socket.c_str(), "--save", "", "--appendonly", "no", "--dir",
             dir.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  auto stop_server = [&] {
    ::kill(redis_pid, SIGKILL);
    ::waitpid(redis_pid, nullptr, 0);
    std::filesystem::remove_all(dir);
  };
  bool up = false;
  for (int i = 0; i < 300 && !up; ++i) {
    std::this_thread::sleep_for(10ms);
    try {
      redis::connection probe{{.unix_socket = socket, .reconnect_backoff = 0ms, .max_reconnect_backoff = 0ms}};
      up = probe.command({"PING"})->type == REDIS_REPLY_STATUS;
    } catch (const redis::error&) {
    }
  }
  if (!up) {
    stop_server();
    std::puts("skipped: could not start redis-server (Debian: apt-get install redis-server)");
    std::puts("fleet_rate_limit: done");
    return 0;
  }

  const auto start = std::chrono::steady_clock::now();
  pid_t pids[workers];
  int pipes[workers][2];
  for (int w = 0; w < workers; ++w) {
    if (::pipe(pipes[w]) != 0) return 1;
    pids[w] = ::fork();
    if (pids[w] == 0) {
      const int granted = work(socket);
      (void)!::write(pipes[w][1], &granted, sizeof granted);
      ::_exit(0);
    }
  }
  int total = 0;
  for (int w = 0; w < workers; ++w) {
    int granted = 0;
    if (::read(pipes[w][0], &granted, sizeof granted) != sizeof granted) granted = 0;
    ::waitpid(pids[w], nullptr, 0);
    std::printf("worker %d: %d permits\n", w + 1, granted);
    total += granted;
  }
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stop_server();
  // The quota over the run: the burst, then the rate (plus one for the edges).
  const int quota = burst + static_cast<int>(rate * elapsed) + 1;
  std::printf("fleet total: %d permits in %.2f s (quota %d)\n", total, elapsed, quota);
  std::printf("within the quota: %s\n", total <= quota ? "yes" : "NO");
  std::puts("fleet_rate_limit: done");
  return total <= quota && total >= burst ? 0 : 1;
}
