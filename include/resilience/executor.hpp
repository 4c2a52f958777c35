// resilience/executor.hpp: where async calls and detached timeouts run.
//
// An executor is anything with `post(task)`. The library ships a fixed-size
// thread_pool, a lazily created process-wide default pool, and a
// manual_executor that runs queued work only when a test says so. Timers
// (retry delays, timeouts) come from the call's clock_ref::call_at; timed
// work is posted to an executor, so no timer thread ever runs user code.
//
//   resilience::thread_pool pool{4};
//   auto fetch = resilience::resilient{fetch_factor, resilience::retry{}}.with_executor(pool);
//   std::future<double> f = fetch.async("electricity");
#pragma once

#include <algorithm>
#include <atomic>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "clock.hpp"

namespace resilience {
inline namespace v1 {

namespace detail {

// A move-only std::function: tasks own promises and other move-only state.
template <class Sig>
class unique_function;

template <class R, class... A>
class unique_function<R(A...)> {
 public:
  unique_function() noexcept = default;
  template <class F>
    requires(!std::is_same_v<std::decay_t<F>, unique_function> && std::is_invocable_r_v<R, std::decay_t<F>&, A...>)
  unique_function(F&& f) : p_{std::make_unique<impl<std::decay_t<F>>>(std::forward<F>(f))} {}

  explicit operator bool() const noexcept { return p_ != nullptr; }
  R operator()(A... a) { return p_->call(std::forward<A>(a)...); }

 private:
  struct base {
    virtual ~base() = default;
    virtual R call(A... a) = 0;
  };
  template <class F>
  struct impl final : base {
    template <class G>
    explicit impl(G&& g) : f{std::forward<G>(g)} {}
    R call(A... a) override { return std::invoke(f, std::forward<A>(a)...); }
    F f;
  };
  std::unique_ptr<base> p_;
};

}  // namespace detail

/// A unit of work for an executor: a move-only nullary callable.
using task = detail::unique_function<void()>;

/// Anything that can run tasks: `e.post(task)` queues the task and returns
/// at once; the task runs later, on a thread of the executor's choosing.
template <class E>
concept executor = requires(E& e, task t) { e.post(std::move(t)); };

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
    requires(!std::is_same_v<std::remove_cvref_t<E>, executor_ref> && std::is_copy_constructible_v<std::remove_cvref_t<E>>)
  static executor_ref adapt(E&& e) {
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

class pool_state final : public executor_source {
 public:
  void post(task t) override {
    {
      std::lock_guard lock{mutex_};
      if (!closed_) {
        queue_.push_back(std::move(t));
        cv_.notify_one();
        return;
      }
    }
    // Shut down: t is destroyed here, outside the lock (its destructor may post).
  }

  void work() {
    for (;;) {
      task t;
      {
        std::unique_lock lock{mutex_};
        cv_.wait(lock, [&] { return closed_ || !queue_.empty(); });
        if (queue_.empty()) return;
        t = std::move(queue_.front());
        queue_.pop_front();
      }
      t();
    }
  }

  // Stops accepting work; with `drain` the workers finish the queue first,
  // otherwise the queued tasks are destroyed unrun.
  void close(bool drain) {
    std::deque<task> dropped;
    {
      std::lock_guard lock{mutex_};
      closed_ = true;
      if (!drain) dropped.swap(queue_);
      cv_.notify_all();
    }
  }

  std::size_t queued() const {
    std::lock_guard lock{mutex_};
    return queue_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<task> queue_;
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

/// A fixed number of worker threads sharing one FIFO queue.
/// Destroying the pool finishes the queued work, then joins the workers;
/// shutdown(false) instead drops what has not started (futures then report
/// broken_promise). Do not destroy a pool from one of its own tasks.
class thread_pool {
 public:
  /// Starts `threads` workers (at least 1).
  explicit thread_pool(std::size_t threads = std::max(2u, std::thread::hardware_concurrency()))
      : state_{std::make_shared<detail::pool_state>()} {
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
  if (source_)
    source_->post(std::move(t));
  else
    default_thread_pool().post(std::move(t));
}

/// Runs t on `ex` once `clk` reaches `when` (the timer only posts; t never
/// runs on a timer thread). Returns the timer, cancellable through clk.
inline timer_id post_at(const clock_ref& clk, time_point when, executor_ref ex, task t) {
  // call_at takes a copyable std::function; the task is shared to fit.
  auto shared = std::make_shared<task>(std::move(t));
  return clk.call_at(when, [ex = std::move(ex), shared]() mutable { ex.post(std::move(*shared)); });
}

namespace detail {

// The cooperative timeout's timer for the real steady clock. Timers are
// intrusive nodes on the caller's stack (no allocation), kept in one FIFO
// list per distinct duration: for a monotonic clock, now + d arrives in
// deadline order, so insertion and cancellation are O(1) and the thread is
// woken only when a new timer becomes the earliest.
class steady_timer_queue {
 public:
  struct node {
    time_point deadline{};
    duration bucket{};
    void (*fire)(node*) noexcept = nullptr;
    node* prev = nullptr;
    node* next = nullptr;
    int state = 0;  // 0 idle, 1 queued, 2 firing, 3 fired
  };

  static steady_timer_queue& instance() {
    static steady_timer_queue q;
    return q;
  }

  void schedule(node& n, duration d, time_point now) {
    n.deadline = now + d;
    n.bucket = d;
    std::lock_guard lock{mutex_};
    list* l = nullptr;
    for (auto& b : lists_)
      if (b.d == d) l = &b;
    if (l == nullptr) l = &lists_.emplace_back(list{d, nullptr, nullptr});
    n.prev = l->tail;
    n.next = nullptr;
    (l->tail ? l->tail->next : l->head) = &n;
    l->tail = &n;
    n.state = 1;
    if (!thread_.joinable()) thread_ = std::jthread{[this](std::stop_token st) { run(st); }};
    if (n.deadline < wake_at_) cv_.notify_one();
  }

  // Removes n; if it is firing right now, waits until it has fired.
  // Returns true when n had not fired.
  bool cancel(node& n) {
    std::unique_lock lock{mutex_};
    if (n.state == 1) {
      unlink(n);
      n.state = 0;
      return true;
    }
    fired_cv_.wait(lock, [&] { return n.state != 2; });
    return false;
  }

  ~steady_timer_queue() {
    if (thread_.joinable()) {
      thread_.request_stop();
      cv_.notify_all();
      thread_.join();
    }
  }

 private:
  struct list {
    duration d;
    node* head;
    node* tail;
  };

  void unlink(node& n) {
    for (auto& l : lists_) {
      if (l.d != n.bucket) continue;
      (n.prev ? n.prev->next : l.head) = n.next;
      (n.next ? n.next->prev : l.tail) = n.prev;
      return;
    }
  }

  node* earliest() {
    node* best = nullptr;
    for (auto& l : lists_)
      if (l.head && (!best || l.head->deadline < best->deadline)) best = l.head;
    return best;
  }

  void run(std::stop_token st) {
    std::unique_lock lock{mutex_};
    while (!st.stop_requested()) {
      node* n = earliest();
      if (n == nullptr) {
        wake_at_ = no_deadline;
        cv_.wait(lock, st, [&] { return earliest() != nullptr; });
        continue;
      }
      // A copy: n may be cancelled and its frame reused while we wait unlocked.
      const time_point deadline = n->deadline;
      if (time_point{std::chrono::steady_clock::now()} < deadline) {
        wake_at_ = deadline;
        cv_.wait_until(lock, st, deadline, [&] {
          // Compare deadlines too: a new timer may sit at a cancelled one's address.
          node* e = earliest();
          return e != n || e->deadline != deadline || time_point{std::chrono::steady_clock::now()} >= deadline;
        });
        continue;
      }
      unlink(*n);
      n->state = 2;
      lock.unlock();
      n->fire(n);
      lock.lock();
      n->state = 3;  // the owner may destroy n as soon as it sees this
      fired_cv_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable_any cv_;
  std::condition_variable fired_cv_;
  std::vector<list> lists_;
  time_point wake_at_ = no_deadline;
  std::jthread thread_;
};

}  // namespace detail

inline thread_pool& default_thread_pool() {
  // The timer singletons are built first so that they are destroyed after
  // the pool: work the pool finishes at exit may still arm timers.
  (void)detail::steady_timer_thread::instance();
  (void)detail::steady_timer_queue::instance();
  static thread_pool pool;
  return pool;
}

}  // namespace v1
}  // namespace resilience
