// Async calls on an asio io_context: the executor concept is one member
// function, post(task), so a two-line adapter lets r.async() run its work on
// the threads that already run the application's io_context. Retry waits are
// timers on the call's clock, not sleeps, so no io_context thread is held
// during a backoff (here 20 ms and 40 ms of real time on the steady clock).
// Built only when asio is installed (Debian: libasio-dev).
#include <resilience/executor.hpp>
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

// [asio adapter]
// An asio executor as a resilience executor: tasks are posted to the io_context.
struct asio_executor {
  asio::io_context::executor_type ex;
  void post(resilience::task t) const { asio::post(ex, std::move(t)); }
};
// [asio adapter]

// An LLM endpoint that is overloaded for its first two requests.
std::atomic<int> llm_requests{0};
std::string summarize(const std::string& supplier) {
  if (++llm_requests <= 2) throw std::runtime_error{"LLM: HTTP 529 overloaded"};
  return "summary of " + supplier + "'s emissions disclosure";
}

}  // namespace

int main() {
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) threads.emplace_back([&io] { io.run(); });

  // [use it]
  resilience::resilient llm{summarize, resilience::retry{{.max_retries = 2, .base_delay = 20ms}}};
  llm.with_executor(resilience::executor_ref::adapt(asio_executor{io.get_executor()}));
  std::future<std::string> summary = llm.async(std::string{"Acme Steel"});
  // [use it]

  const std::string text = summary.get();
  std::printf("%s (after %d requests)\n", text.c_str(), llm_requests.load());

  guard.reset();
  for (auto& t : threads) t.join();
  return llm_requests == 3 ? 0 : 1;
}
