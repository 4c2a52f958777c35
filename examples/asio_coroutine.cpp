// co_call inside asio::awaitable, on an io_context: the call's work runs on
// the io_context's threads (an executor adapter), the library's timers
// (retry waits) are asio steady_timers on the same io_context (a clock
// adapter), and an asio cancellation slot cancels a call mid-backoff through
// its std::stop_token. asio's coroutines await only asio's own operations, so
// a small bridge makes the co_call an asio async operation.
// Built only when asio is installed (Debian: libasio-dev).
// asio 1.22 sees C++20 coroutines only on g++ (on clang it looks for the old TS).
#if defined(__clang__) && defined(__cpp_impl_coroutine) && !defined(ASIO_HAS_CO_AWAIT)
#define ASIO_HAS_CO_AWAIT 1
#endif

#include <resilience/clock.hpp>
#include <resilience/coro.hpp>
#include <resilience/executor.hpp>
#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>

#include <asio/associated_cancellation_slot.hpp>
#include <asio/async_result.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/dispatch.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdio>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <utility>

using namespace std::chrono_literals;

namespace {

// [asio adapters]
// Tasks go to the io_context.
struct asio_executor {
  asio::io_context::executor_type ex;
  void post(resilience::task t) const { asio::post(ex, std::move(t)); }
};

// The real steady time, with timers that are asio steady_timers on the io_context.
class asio_clock final : public resilience::clock_source {
 public:
  explicit asio_clock(asio::io_context& io) : io_{io} {}
  resilience::time_point now() const noexcept override { return std::chrono::steady_clock::now(); }
  bool reads_steady_time() const noexcept override { return true; }
  bool sleep_until(resilience::time_point deadline, std::stop_token stop) const override {
    return resilience::steady_clock{}.sleep_until(deadline, std::move(stop));
  }
  resilience::timer_id call_at(resilience::time_point deadline, std::function<void()> fn) const override {
    auto timer = std::make_shared<asio::steady_timer>(
        io_, std::chrono::time_point_cast<std::chrono::steady_clock::duration>(deadline));
    std::lock_guard lock{mutex_};
    const resilience::timer_id id = ++last_;
    pending_.emplace(id, std::move(fn));
    timer->async_wait([this, id, timer](std::error_code) {
      std::function<void()> due;
      {
        std::lock_guard lock{mutex_};
        auto it = pending_.find(id);
        if (it == pending_.end()) return;  // cancelled
        due = std::move(it->second);
        pending_.erase(it);
      }
      due();
    });
    timers_.emplace(id, timer);
    return id;
  }
  bool cancel(resilience::timer_id id) const noexcept override {
    std::lock_guard lock{mutex_};
    if (pending_.erase(id) == 0) return false;
    if (auto it = timers_.find(id); it != timers_.end()) {
      if (auto t = it->second.lock()) t->cancel();
      timers_.erase(it);
    }
    return true;
  }

 private:
  asio::io_context& io_;
  mutable std::mutex mutex_;
  mutable resilience::timer_id last_ = 0;
  mutable std::map<resilience::timer_id, std::function<void()>> pending_;
  mutable std::map<resilience::timer_id, std::weak_ptr<asio::steady_timer>> timers_;
};
// [asio adapters]

// A coroutine that starts at once and frees itself at the end.
struct spawned {
  struct promise_type {
    spawned get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

// [asio bridge]
// Awaits make() (a co_call) and hands its result to an asio completion handler.
template <class T, class Make, class Handler>
spawned complete_with(Make make, Handler handler) {
  std::exception_ptr error;
  T value{};
  try {
    value = co_await make();
  } catch (...) {
    error = std::current_exception();
  }
  auto ex = asio::get_associated_executor(handler);
  asio::dispatch(ex, [handler = std::move(handler), error, value = std::move(value)]() mutable {
    handler(error, std::move(value));
  });
}

// r.co_call(args...) as an asio operation: `co_await resilient_call<T>(r, args...)`
// in an asio::awaitable. Cancelling the awaiting coroutine (its cancellation
// slot) requests stop on the call's stop_token: a retry's wait ends at once.
template <class T, class R, class... A>
asio::awaitable<T> resilient_call(const R& r, A... args) {
  return asio::async_initiate<decltype(asio::use_awaitable), void(std::exception_ptr, T)>(
      [&r](auto handler, auto... a) {
        auto stop = std::make_shared<std::stop_source>();
        auto slot = asio::get_associated_cancellation_slot(handler);
        if (slot.is_connected()) slot.assign([stop](asio::cancellation_type_t) { stop->request_stop(); });
        complete_with<T>([&r, stop, a...] { return r.co_call_with({.stop = stop->get_token()}, a...); },
                         std::move(handler));
      },
      asio::use_awaitable, std::move(args)...);
}
// [asio bridge]

// An LLM endpoint that is overloaded for its first two requests.
std::atomic<int> llm_requests{0};
std::string summarize(const std::string& supplier) {
  if (++llm_requests <= 2) throw std::runtime_error{"LLM: HTTP 529 overloaded"};
  return "summary of " + supplier + "'s emissions disclosure";
}

// An ERP endpoint that is down for good.
std::atomic<int> erp_requests{0};
int fetch_invoices(const std::string&) {
  ++erp_requests;
  throw std::runtime_error{"ERP: HTTP 503 unavailable"};
}

}  // namespace

int main() {
  asio::io_context io;
  const resilience::clock_ref clock{std::make_shared<asio_clock>(io)};
  const auto executor = resilience::executor_ref::adapt(asio_executor{io.get_executor()});

  // [use it]
  resilience::resilient llm{summarize, resilience::retry{{.max_retries = 2, .base_delay = 20ms}}};
  llm.with_clock(clock).with_executor(executor);
  // [use it]

  // A call in a 10 s backoff, cancelled after 50 ms through asio's cancellation slot.
  resilience::resilient erp{fetch_invoices, resilience::retry{{.max_retries = 3, .base_delay = 10s}}};
  erp.with_clock(clock).with_executor(executor);
  asio::cancellation_signal cancel;
  asio::steady_timer later{io};
  auto cancelled_call = [&]() -> asio::awaitable<void> {
    const auto started = std::chrono::steady_clock::now();
    try {
      co_await resilient_call<int>(erp, std::string{"supplier 42"});
    } catch (const std::exception& e) {
      const auto waited = std::chrono::steady_clock::now() - started;
      std::printf("ERP call cancelled mid-backoff after %d request(s): %s (%s)\n", erp_requests.load(), e.what(),
                  waited < 5s ? "well before the 10 s wait" : "too late");
    }
  };

  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        const std::string text = co_await resilient_call<std::string>(llm, std::string{"Acme Steel"});
        std::printf("%s (after %d requests)\n", text.c_str(), llm_requests.load());
        asio::co_spawn(io, cancelled_call, asio::bind_cancellation_slot(cancel.slot(), asio::detached));
        later.expires_after(50ms);
        later.async_wait([&](std::error_code) { cancel.emit(asio::cancellation_type::terminal); });
      },
      asio::detached);

  io.run();
  return llm_requests == 3 && erp_requests == 1 ? 0 : 1;
}
