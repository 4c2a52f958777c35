// resilience/executor.hpp: where async calls and detached timeouts run.
//
// An executor is anything with `post(task)`. The library ships a fixed-size
// thread_pool, a lazily created process-wide default pool, and a
// manual_executor that runs queued work only when a test says so. Timers
// (retry delays, async timeouts) come from the call's clock_ref::call_at;
// timed work is posted to an executor. On the real clock, both those timers
// and cooperative timeouts (lock-free, one per call) are served by one timer
// service (detail/timer_service.hpp).
//
//   resilience::thread_pool pool{4};
//   auto fetch = resilience::resilient{fetch_factor, resilience::retry{}}.with_executor(pool);
//   std::future<double> f = fetch.async("electricity");
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "clock.hpp"
#include "detail/unique_function.hpp"

namespace resilience {
inline namespace v1 {

/// A unit of work for an executor: a move-only nullary callable.
using task = detail::unique_function<void()>;

/// Anything that can run tasks: `e.post(task)` queues the task and returns
/// at once; the task runs later, on a thread of the executor's choosing.
template <class E>
concept executor = requires(E& e, task t) {
  e.post(std::move(t));
};

/// The interface behind executor_ref, for executors the library owns.
class executor_source {
 public:
  virtual ~executor_source() = default;
  /// Queues t; an executor that is shut down destroys t without running it.
  virtual void post(task t) = 0;
};

namespace detail {
template <class E>
class executor_adapter final : public executor_source {
 public:
  explicit executor_adapter(E e) : e_{std::move(e)} {}
  void post(task t) override { e_.post(std::move(t)); }

 private:
  E e_;
};
}  // namespace detail

/// A copyable handle to an executor; an empty one means default_executor().
/// Handles to a thread_pool or manual_executor stay safe after the pool is
/// gone: posting then drops the task (a future waiting on it gets
/// std::future_errc::broken_promise).
class executor_ref {
 public:
  executor_ref() noexcept = default;
  explicit executor_ref(std::shared_ptr<executor_source> source) noexcept : source_{std::move(source)} {}
  /// Adapts a user executor (held by value: copy a handle, such as an asio executor).
  template <executor E>
  requires(!std::is_same_v<std::remove_cvref_t<E>, executor_ref> &&
           std::is_copy_constructible_v<std::remove_cvref_t<E>>) static executor_ref adapt(E&& e) {
    return executor_ref{std::make_shared<detail::executor_adapter<std::remove_cvref_t<E>>>(std::forward<E>(e))};
  }

  /// Queues t on the executor (the default pool when empty).
  void post(task t) const;
  /// True when this handle names no executor (calls use default_executor()).
  bool empty() const noexcept { return source_ == nullptr; }

  friend bool operator==(const executor_ref& a, const executor_ref& b) noexcept { return a.source_ == b.source_; }

 private:
  std::shared_ptr<executor_source> source_;
};
static_assert(executor<executor_ref>);

namespace detail {

// Tells the CPU that this thread is busy-waiting (lets the sibling
// hyperthread run, saves power).
inline void cpu_relax() noexcept {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) && defined(__GNUC__)
  asm volatile("yield");
#else
  std::this_thread::yield();
#endif
}

// Polls ready() until it holds (true) or `clk` reaches `until` (false). A
// thread woken through the kernel may start running tens of microseconds
// later (a virtual machine's idle core must be woken first); a short poll
// saves that when the answer is near. A few pause instructions first, then
// the processor is yielded between checks, so that the thread we wait for
// can run even when it shares our core (on a loaded machine, most of the
// gain).
template <class Ready>
bool spin_until(const clock_ref& clk, time_point until, Ready&& ready) {
  for (unsigned i = 0;; ++i) {
    if (ready()) return true;
    if (i % 16 == 0 && clk.now() >= until) return false;
    if (i < 8) cpu_relax();
    else std::this_thread::yield();
  }
}

// A FIFO of tasks in one growable ring: no allocation once it has grown to
// the load.
class task_ring {
 public:
  bool empty() const noexcept { return count_ == 0; }
  std::size_t size() const noexcept { return count_; }
  void push(task t) {
    if (count_ == slots_.size()) grow();
    slots_[(head_ + count_) & (slots_.size() - 1)] = std::move(t);
    ++count_;
  }
  task pop() noexcept {
    task t = std::move(slots_[head_]);
    head_ = (head_ + 1) & (slots_.size() - 1);
    --count_;
    return t;
  }
  void swap(task_ring& other) noexcept {
    slots_.swap(other.slots_);
    std::swap(head_, other.head_);
    std::swap(count_, other.count_);
  }

 private:
  void grow() {
    std::vector<task> bigger(std::max<std::size_t>(16, slots_.size() * 2));  // a power of two
    for (std::size_t i = 0; i < count_; ++i) bigger[i] = std::move(slots_[(head_ + i) & (slots_.size() - 1)]);
    slots_.swap(bigger);
    head_ = 0;
  }

  std::vector<task> slots_;
  std::size_t head_ = 0;
  std::size_t count_ = 0;
};

// A pool's shared queue. A worker that runs out of work polls for new work
// for `spin` before it sleeps (one worker at a time), and a post that such a
// worker will see wakes no one: a steady stream of tasks then goes from
// poster to worker without a kernel wake-up.
class pool_state final : public executor_source {
 public:
  explicit pool_state(duration spin) noexcept : spin_{spin} {}

  void post(task t) override {
    std::unique_lock lock{mutex_};
    if (closed_) {
      lock.unlock();
      return;  // shut down: t is destroyed here, outside the lock (its destructor may post)
    }
    queue_.push(std::move(t));
    posts_.store(posts_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    // The spinning worker, if any, takes one task; wake a sleeper for the rest.
    const bool wake = sleeping_ > 0 && queue_.size() > (spinning_ ? 1u : 0u);
    lock.unlock();
    if (wake) cv_.notify_one();
  }

  void work() {
    std::unique_lock lock{mutex_};
    bool spun = false;
    for (;;) {
      if (!queue_.empty()) {
        task t = queue_.pop();
        lock.unlock();
        t();
        t = task{};  // what it holds dies outside the lock too
        spun = false;
        lock.lock();
        continue;
      }
      if (closed_) return;
      if (!spun && !spinning_ && spin_ > duration::zero()) {
        // Every post and the close change posts_ under the lock, so a change
        // seen here means there is something to look at.
        spinning_ = spun = true;
        const std::uint64_t seen = posts_.load(std::memory_order_relaxed);
        lock.unlock();
        const clock_ref real;
        spin_until(real, saturating_add(real.now(), spin_),
                   [&] { return posts_.load(std::memory_order_relaxed) != seen; });
        lock.lock();
        spinning_ = false;
        continue;
      }
      ++sleeping_;
      cv_.wait(lock);
      --sleeping_;
    }
  }

  // Stops accepting work; with `drain` the workers finish the queue first,
  // otherwise the queued tasks are destroyed unrun.
  void close(bool drain) {
    task_ring dropped;
    {
      std::lock_guard lock{mutex_};
      closed_ = true;
      posts_.store(posts_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      if (!drain) dropped.swap(queue_);
      cv_.notify_all();
    }
  }

  std::size_t queued() const {
    std::lock_guard lock{mutex_};
    return queue_.size();
  }

 private:
  const duration spin_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  task_ring queue_;
  std::atomic<std::uint64_t> posts_{0};  // written under the lock, polled without it
  std::size_t sleeping_ = 0;
  bool spinning_ = false;
  bool closed_ = false;
};

class manual_state final : public executor_source {
 public:
  void post(task t) override {
    std::lock_guard lock{mutex_};
    if (!closed_) queue_.push_back(std::move(t));
  }
  bool run_one() {
    task t;
    {
      std::lock_guard lock{mutex_};
      if (queue_.empty()) return false;
      t = std::move(queue_.front());
      queue_.pop_front();
    }
    t();
    return true;
  }
  std::size_t pending() const {
    std::lock_guard lock{mutex_};
    return queue_.size();
  }
  void close() {
    std::deque<task> dropped;
    std::lock_guard lock{mutex_};
    closed_ = true;
    dropped.swap(queue_);
  }

 private:
  mutable std::mutex mutex_;
  std::deque<task> queue_;
  bool closed_ = false;
};

}  // namespace detail

/// How long an idle thread_pool worker polls for new work before it sleeps
/// (one worker per pool at a time): 50 µs.
inline constexpr duration default_pool_spin = std::chrono::microseconds{50};

/// A fixed number of worker threads sharing one FIFO queue.
/// Destroying the pool finishes the queued work, then joins the workers;
/// shutdown(false) instead drops what has not started (futures then report
/// broken_promise). Do not destroy a pool from one of its own tasks.
/// A worker that runs out of work polls for `spin` before it sleeps, so that
/// a task posted meanwhile starts without a kernel wake-up; at most one
/// worker polls at a time, and zero turns polling off.
class thread_pool {
 public:
  /// Starts `threads` workers (at least 1); an idle worker polls for `spin` (>= 0).
  explicit thread_pool(std::size_t threads = std::max(2u, std::thread::hardware_concurrency()),
                       duration spin = default_pool_spin)
      : state_{std::make_shared<detail::pool_state>(checked_spin(spin))} {
    threads = std::max<std::size_t>(threads, 1);
    workers_.reserve(threads);
    for (std::size_t i = 0; i < threads; ++i) workers_.emplace_back([s = state_] { s->work(); });
  }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;
  ~thread_pool() { shutdown(true); }

  /// Queues t.
  void post(task t) { state_->post(std::move(t)); }
  /// A handle for with_executor(); it outlives the pool safely.
  executor_ref ref() const noexcept { return executor_ref{state_}; }
  operator executor_ref() const noexcept { return ref(); }
  /// Number of worker threads.
  std::size_t size() const noexcept { return workers_.size(); }
  /// Tasks queued and not started.
  std::size_t queued() const { return state_->queued(); }

  /// Stops accepting work and joins the workers; `drain` runs what is queued
  /// first, otherwise queued tasks are destroyed unrun. Idempotent.
  void shutdown(bool drain = true) {
    state_->close(drain);
    for (auto& w : workers_)
      if (w.joinable()) w.join();
  }

 private:
  static duration checked_spin(duration spin) {
    if (spin < duration::zero()) throw std::invalid_argument{"thread_pool: spin must be >= 0"};
    return checked_duration(spin, "thread_pool: spin");
  }

  std::shared_ptr<detail::pool_state> state_;
  std::vector<std::thread> workers_;
};
static_assert(executor<thread_pool>);

/// An executor for tests: post() only queues; the test runs the work with
/// run_one()/run_all() on its own thread, so the interleaving is explicit.
class manual_executor {
 public:
  manual_executor() : state_{std::make_shared<detail::manual_state>()} {}
  manual_executor(const manual_executor&) = delete;
  manual_executor& operator=(const manual_executor&) = delete;
  /// Drops whatever is still queued.
  ~manual_executor() { state_->close(); }

  /// Queues t.
  void post(task t) { state_->post(std::move(t)); }
  /// Runs the oldest queued task, if any; returns whether one ran.
  bool run_one() { return state_->run_one(); }
  /// Runs tasks (including ones they post) until the queue is empty; returns how many ran.
  std::size_t run_all() {
    std::size_t n = 0;
    while (state_->run_one()) ++n;
    return n;
  }
  /// Tasks queued and not run.
  std::size_t pending() const { return state_->pending(); }
  /// A handle for with_executor().
  executor_ref ref() const noexcept { return executor_ref{state_}; }
  operator executor_ref() const noexcept { return ref(); }

 private:
  std::shared_ptr<detail::manual_state> state_;
};
static_assert(executor<manual_executor>);

/// The process-wide pool used when a call names no executor: created on first
/// use with max(2, hardware_concurrency()) threads; at exit it finishes its
/// queue and joins (so abandoned work must end eventually).
inline thread_pool& default_thread_pool();

/// A handle to default_thread_pool().
inline executor_ref default_executor() { return default_thread_pool().ref(); }

inline void executor_ref::post(task t) const {
  if (source_) source_->post(std::move(t));
  else default_thread_pool().post(std::move(t));
}

/// Runs t on `ex` once `clk` reaches `when` (the timer only posts; t never
/// runs on a timer thread). Returns the timer, cancellable through clk.
inline timer_id post_at(const clock_ref& clk, time_point when, executor_ref ex, task t) {
  // call_at takes a copyable std::function; the task is shared to fit.
  auto shared = std::make_shared<task>(std::move(t));
  return clk.call_at(when, [ex = std::move(ex), shared]() mutable { ex.post(std::move(*shared)); });
}

inline thread_pool& default_thread_pool() {
  // The timer service is started first so that it is joined after the
  // pool: work the pool finishes at exit may still arm timers.
  (void)detail::timer_service::instance();
  static thread_pool pool;
  return pool;
}

}  // namespace v1
}  // namespace resilience
