// tests/support/redis_server.hpp: a redis-server of the test's own, on a unix
// socket in a fresh temporary directory, without persistence, killed at the
// end; shared by tests/test_redis.cpp and tests/bench/bench_redis.cpp.
// Where redis-server is not on PATH, running() is false (tests skip).
#pragma once

#include <resilience/redis.hpp>

#include <fcntl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace support {

// The redis-server on PATH, or empty.
inline std::string find_redis_server() {
  const char* path = std::getenv("PATH");
  std::string_view rest = path ? path : "/usr/bin:/usr/sbin";
  while (!rest.empty()) {
    const auto colon = rest.find(':');
    const std::filesystem::path candidate = std::filesystem::path{std::string{rest.substr(0, colon)}} / "redis-server";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
  }
  return {};
}

class redis_server {
 public:
  // extra: more configuration arguments ("--requirepass", "pw", ...).
  explicit redis_server(std::vector<std::string> extra = {}) : extra_{std::move(extra)} {
    binary_ = find_redis_server();
    if (binary_.empty()) return;
    char tmpl[] = "/tmp/resilience-redis-XXXXXX";
    if (!::mkdtemp(tmpl)) return;
    dir_ = tmpl;
    socket_ = dir_ + "/redis.sock";
    start();
  }
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;
  ~redis_server() {
    stop();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  bool running() const { return pid_ > 0; }
  void signal(int sig) const { ::kill(pid_, sig); }
  const std::string& socket() const { return socket_; }

  // Starts it and waits until its socket accepts connections (a server
  // starting up: the only wait on real time here, for a process to start).
  void start() {
    if (binary_.empty() || dir_.empty()) return;
    std::vector<std::string> args{binary_, "--port",    "0", "--unixsocket", socket_,  "--unixsocketperm",
                                  "700",   "--save",    "",  "--appendonly", "no",     "--dir",
                                  dir_,    "--logfile", "",  "--loglevel",   "warning"};
    args.insert(args.end(), extra_.begin(), extra_.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      // Its log (and its hold on our stdout) goes nowhere.
      const int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);
      ::dup2(null, 2);
      ::execv(binary_.c_str(), argv.data());
      ::_exit(127);
    }
    for (int i = 0; i < 1000; ++i) {
      if (redisContext* c = redisConnectUnix(socket_.c_str())) {
        const bool ok = !c->err;
        redisFree(c);
        if (ok) return;
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // it exited: bad arguments
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
    stop();
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    std::filesystem::remove(socket_);
  }

  std::shared_ptr<resilience::redis::connection> connect(resilience::redis::connection_options o = {}) const {
    o.unix_socket = socket_;
    return std::make_shared<resilience::redis::connection>(std::move(o));
  }

 private:
  std::vector<std::string> extra_;
  std::string binary_, dir_, socket_;
  pid_t pid_ = -1;
};

}  // namespace support
