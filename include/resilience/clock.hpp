// resilience/clock.hpp: where every policy gets its time.
//
// A policy never reads a system clock itself: it asks a clock_ref, which is
// either the real steady clock or a manual_clock that moves only when a test
// moves it.
//
//   resilience::manual_clock clk;
//   auto wrapped = resilience::resilient{fetch, resilience::retry{}}.with_clock(clk);
//   std::jthread t{[&] { wrapped("electricity"); }};  // sleeps 1 s of virtual time
//   clk.wait_for_sleepers(1);
//   clk.advance(1s);                                    // ...which passes now
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <thread>
#include <utility>
#include <vector>

#if defined(__linux__) && __has_include(<sys/syscall.h>) && __has_include(<unistd.h>)
#include <sys/syscall.h>
#include <unistd.h>
#ifdef SYS_membarrier
#define RESILIENCE_DETAIL_MEMBARRIER 1
#endif
#endif

namespace resilience {
inline namespace v1 {

/// The one duration type of the library: nanoseconds.
using duration = std::chrono::nanoseconds;
/// The one time point type: steady-clock time in nanoseconds. manual_clock
/// produces values of the same type, starting at its own epoch.
using time_point = std::chrono::time_point<std::chrono::steady_clock, duration>;
/// "No deadline".
inline constexpr time_point no_deadline = time_point::max();

/// Identifies a timer scheduled with call_at; 0 is never a valid id.
using timer_id = std::uint64_t;

/// A clock the library can use: now() gives a time point you can do
/// arithmetic with, and sleep_until(t, stop) blocks until t (true) or until
/// stop is requested (false).
template <class C>
concept clock = requires(const C& c, typename C::time_point t, std::stop_token stop) {
  typename C::duration;
  typename C::time_point;
  { c.now() } -> std::same_as<typename C::time_point>;
  { c.now() - t } -> std::convertible_to<typename C::duration>;
  { t + typename C::duration{1} } -> std::same_as<typename C::time_point>;
  { c.sleep_until(t, stop) } -> std::same_as<bool>;
};

/// A clock that can also run a callback at a time point (retry delays and
/// timeouts of async calls use it).
template <class C>
concept timer_clock = clock<C> && requires(const C& c, typename C::time_point t, timer_id id) {
  { c.call_at(t, std::function<void()>{}) } -> std::same_as<timer_id>;
  { c.cancel(id) } -> std::same_as<bool>;
};

/// The interface behind clock_ref, for users who bring their own clock.
class clock_source {
 public:
  virtual ~clock_source() = default;
  /// The current time.
  virtual time_point now() const noexcept = 0;
  /// Blocks until deadline (returns true) or until stop is requested (false).
  virtual bool sleep_until(time_point deadline, std::stop_token stop) const = 0;
  /// Runs fn at deadline, on a thread of the clock's choosing; a deadline in
  /// the past runs it as soon as possible.
  virtual timer_id call_at(time_point deadline, std::function<void()> fn) const = 0;
  /// Cancels a timer; true when it had not started yet and never will.
  virtual bool cancel(timer_id id) const noexcept = 0;
};

namespace detail {

// Fences for a handshake with one hot side (a thread arming and disarming
// its own timeout slots, once per call) and one rare side (the timer
// thread). On Linux, membarrier(2) lets the rare side pay for both, so the
// hot side needs only a compiler barrier: heavy() makes every other thread
// of the process pass a full memory barrier before it returns (the
// "asymmetric fence" of folly and the Linux kernel). Where the kernel has no
// membarrier, both sides use sequentially consistent operations instead.
class asymmetric_fence {
 public:
  // True when heavy() works, once per process.
  static bool available() noexcept {
    static const bool ok = init();
    return ok;
  }
  static void heavy() noexcept {
#ifdef RESILIENCE_DETAIL_MEMBARRIER
    ::syscall(SYS_membarrier, membarrier_private_expedited, 0, 0);
#endif
  }

 private:
#ifdef RESILIENCE_DETAIL_MEMBARRIER
  static constexpr int membarrier_query = 0;                         // MEMBARRIER_CMD_QUERY
  static constexpr int membarrier_private_expedited = 1 << 3;        // MEMBARRIER_CMD_PRIVATE_EXPEDITED
  static constexpr int membarrier_register_private_expedited = 1 << 4;  // ..._REGISTER_PRIVATE_EXPEDITED
  static bool init() noexcept {
    const long supported = ::syscall(SYS_membarrier, membarrier_query, 0, 0);
    if (supported < 0 || (supported & membarrier_private_expedited) == 0) return false;
    return ::syscall(SYS_membarrier, membarrier_register_private_expedited, 0, 0) == 0;
  }
#else
  static bool init() noexcept { return false; }
#endif
};

// One thread per process serves the real clock's timers, started on first
// use and joined at exit (timers still pending then are dropped). It keeps
// two kinds:
//  - call_at callbacks, in a map under its mutex;
//  - cooperative timeouts (deadline_timer below), one per call through a
//    timeout: too hot for a mutex. Each thread owns a block of slots that
//    it arms and disarms with plain stores; the timer thread scans the
//    blocks. The timer thread sleeps until the earliest deadline it knows
//    of, and a thread arming a slot wakes it only when its deadline is
//    earlier than that; while timeouts are in use it also wakes every
//    `shortest recent limit`, so that a stream of calls never has to wake
//    it, and it stops polling after a quiet period.
class steady_timer_thread {
 public:
  // A timeout in flight. The owner writes deadline, limit and stop, then
  // sets armed; the timer thread claims a due slot, then fires it only if it
  // is still armed. Owner and timer each write their flag, pass a fence,
  // and read the other's (Dekker's handshake), so either the timer sees the
  // owner disarm and leaves the slot alone, or the owner sees the claim and
  // waits until the timer is done with the slot.
  struct slot {
    std::atomic<duration::rep> deadline{0};
    std::atomic<duration::rep> limit{0};
    std::atomic<std::stop_source*> stop{nullptr};  // requested when fired (may be null)
    std::atomic<int> armed{0};
    std::atomic<int> claimed{0};  // an int, so that the owner's wait is a plain futex
    std::atomic<bool> fired{false};
  };

  // A thread's slots. The timer thread only reads them (and the claim
  // flags), under its mutex; a block outlives its thread and is reused.
  struct alignas(64) slot_block {
    static constexpr int size = 8;
    slot slots[size];
    std::atomic<std::uint32_t> arms{0};  // counts the owner's arms, so the timer sees activity
    std::uint32_t in_use = 0;            // owner only: a bit per slot
    bool asymmetric = false;             // asymmetric_fence::available(), copied for the owner
    steady_timer_thread* timer = nullptr;
    slot_block* more = nullptr;  // owner only: the next block when more than `size` are nested
    // Under the timer thread's mutex:
    slot_block* next = nullptr;
    std::uint32_t seen_arms = 0;
    bool owned = false;
  };

  // The process's timer thread. Its state is never destroyed (threads may
  // return their slots at any point of the exit sequence, even after the
  // statics built after it are gone); the thread itself is joined at exit,
  // after which timers no longer fire.
  static steady_timer_thread& instance() {
    static steady_timer_thread* const timer = new steady_timer_thread;
    static const stop_at_exit stopper{*timer};
    return *timer;
  }

  timer_id call_at(time_point deadline, std::function<void()> fn) {
    std::lock_guard lock{mutex_};
    const timer_id id = ++last_id_;
    timers_.emplace(key{deadline, id}, std::move(fn));
    start();
    if (deadline.time_since_epoch().count() < wake_at_.load(std::memory_order_relaxed)) kick_locked();
    return id;
  }

  bool cancel(timer_id id) noexcept {
    std::lock_guard lock{mutex_};
    for (auto it = timers_.begin(); it != timers_.end(); ++it) {
      if (it->first.second == id) {
        timers_.erase(it);
        return true;
      }
    }
    return false;
  }

  // When the timer thread will next wake by itself (no_deadline: when kicked).
  duration::rep wake_at() const noexcept { return wake_at_.load(std::memory_order_seq_cst); }

  // Wakes the timer thread to look at a deadline earlier than wake_at().
  void kick() {
    std::lock_guard lock{mutex_};
    kick_locked();
  }

  // A free block for the calling thread (first use, or deeper nesting).
  slot_block& acquire_block() {
    std::lock_guard lock{mutex_};
    slot_block* b = blocks_;
    while (b != nullptr && b->owned) b = b->next;
    if (b == nullptr) {
      b = new slot_block;
      b->asymmetric = asymmetric_;
      b->timer = this;
      b->next = blocks_;
      blocks_ = b;
    }
    b->owned = true;
    start();
    return *b;
  }

  // Returns a thread's blocks when it exits (none of its slots is armed).
  void release_blocks(slot_block* b) noexcept {
    std::lock_guard lock{mutex_};
    while (b != nullptr) {
      slot_block* more = std::exchange(b->more, nullptr);
      b->owned = false;
      b = more;
    }
  }

  steady_timer_thread(const steady_timer_thread&) = delete;
  steady_timer_thread& operator=(const steady_timer_thread&) = delete;

 private:
  using key = std::pair<time_point, timer_id>;

  // The shortest poll period: shorter limits wake the thread at each arm
  // rather than have it poll faster than this.
  static constexpr duration min_poll = std::chrono::microseconds{100};

  struct stop_at_exit {
    steady_timer_thread& timer;
    ~stop_at_exit() {
      {
        std::lock_guard lock{timer.mutex_};
        timer.stopped_ = true;
      }
      if (timer.thread_.joinable()) {
        timer.thread_.request_stop();
        timer.thread_.join();
      }
    }
  };

  steady_timer_thread() : asymmetric_{asymmetric_fence::available()} {}
  ~steady_timer_thread() = delete;  // see instance()

  void start() {
    if (!thread_.joinable() && !stopped_) thread_ = std::jthread{[this](std::stop_token st) { run(st); }};
  }

  void kick_locked() {
    kicked_ = true;
    cv_.notify_one();
  }

  static time_point now() noexcept { return time_point{std::chrono::steady_clock::now()}; }
  static time_point at(duration::rep r) noexcept { return time_point{duration{r}}; }

  // Claims the armed slots due by `now` into `due`; returns the earliest
  // deadline of the other armed slots, and notes whether any thread armed a
  // slot since the last look (and the shortest limit among those threads).
  time_point claim_due(time_point now, std::vector<slot*>& due) {
    time_point earliest = no_deadline;
    for (slot_block* b = blocks_; b != nullptr; b = b->next) {
      const std::uint32_t arms = b->arms.load(std::memory_order_relaxed);
      const bool busy = arms != b->seen_arms;
      b->seen_arms = arms;
      active_ = active_ || busy;
      for (slot& s : b->slots) {
        if (busy && s.limit.load(std::memory_order_relaxed) > 0)
          poll_ = std::min(poll_, std::max(duration{s.limit.load(std::memory_order_relaxed)}, min_poll));
        if (s.armed.load(std::memory_order_seq_cst) == 0) continue;
        const time_point d = at(s.deadline.load(std::memory_order_relaxed));
        if (d <= now) {
          s.claimed.store(1, std::memory_order_seq_cst);
          due.push_back(&s);
        } else {
          earliest = std::min(earliest, d);
        }
      }
    }
    return earliest;
  }

  time_point earliest_armed() const {
    time_point earliest = no_deadline;
    for (const slot_block* b = blocks_; b != nullptr; b = b->next)
      for (const slot& s : b->slots)
        if (s.armed.load(std::memory_order_seq_cst) != 0) earliest = std::min(earliest, at(s.deadline.load(std::memory_order_relaxed)));
    return earliest;
  }

  static void unclaim(slot& s) noexcept {
    s.claimed.store(0, std::memory_order_release);
    s.claimed.notify_all();
  }

  // Fires the claimed slots that are still armed and due; the others were
  // disarmed (or re-armed later) meanwhile and are left alone.
  void fire(std::unique_lock<std::mutex>& lock, std::vector<slot*>& due, time_point now) {
    if (asymmetric_) asymmetric_fence::heavy();
    std::size_t keep = 0;
    for (slot* s : due) {
      if (s->armed.load(std::memory_order_seq_cst) != 0 && at(s->deadline.load(std::memory_order_relaxed)) <= now)
        due[keep++] = s;
      else
        unclaim(*s);  // under the mutex: its thread may exit as soon as it sees this
    }
    due.resize(keep);
    // Outside the mutex: request_stop runs the token's callbacks (user code).
    // The owners of these slots are still in their calls, or waiting for the
    // claim to go, so the slots and the stop sources stay alive.
    lock.unlock();
    for (slot* s : due) {
      if (std::stop_source* stop = s->stop.load(std::memory_order_relaxed)) stop->request_stop();
      s->fired.store(true, std::memory_order_relaxed);
      unclaim(*s);
    }
    due.clear();
    lock.lock();
  }

  void run(std::stop_token st) {
    std::unique_lock lock{mutex_};
    std::vector<slot*> due;
    while (!st.stop_requested()) {
      kicked_ = false;
      const time_point t = now();
      if (!timers_.empty() && timers_.begin()->first.first <= t) {
        auto fn = std::move(timers_.begin()->second);
        timers_.erase(timers_.begin());
        lock.unlock();
        fn();
        fn = nullptr;  // its captures die outside the mutex too
        lock.lock();
        continue;
      }
      time_point target = claim_due(t, due);
      if (!due.empty()) {
        fire(lock, due, t);
        continue;
      }
      if (!timers_.empty()) target = std::min(target, timers_.begin()->first.first);
      if (active_) target = std::min(target, poll_ >= no_deadline - t ? no_deadline : t + poll_);
      active_ = false;
      poll_ = duration::max();
      // Publish the plan, then look again: a thread that armed a slot before
      // seeing this plan is visible now (or it saw the plan and kicks us).
      wake_at_.store(target.time_since_epoch().count(), std::memory_order_seq_cst);
      if (asymmetric_) asymmetric_fence::heavy();
      if (earliest_armed() < target) continue;
      if (target == no_deadline)
        cv_.wait(lock, st, [&] { return kicked_; });
      else
        cv_.wait_until(lock, st, target, [&] { return kicked_; });
    }
  }

  const bool asymmetric_;
  std::atomic<duration::rep> wake_at_{no_deadline.time_since_epoch().count()};
  std::mutex mutex_;
  std::condition_variable_any cv_;
  bool kicked_ = false;
  std::map<key, std::function<void()>> timers_;
  timer_id last_id_ = 0;
  slot_block* blocks_ = nullptr;
  bool active_ = false;
  duration poll_ = duration::max();
  bool stopped_ = false;
  std::jthread thread_;
};

// The calling thread's first block; constinit, so reading it costs no
// initialization check. A second thread_local, with a destructor, returns
// the blocks when the thread exits (a thread that arms a timeout after that,
// from another thread_local's destructor, keeps its block for good).
inline constinit thread_local steady_timer_thread::slot_block* this_thread_slots = nullptr;
struct this_thread_slots_release {
  bool armed = false;
  ~this_thread_slots_release() {
    if (steady_timer_thread::slot_block* b = std::exchange(this_thread_slots, nullptr)) b->timer->release_blocks(b);
  }
};
inline thread_local this_thread_slots_release this_thread_slots_owner;

// A cooperative timeout on the real clock: arms a slot of the calling thread
// for `deadline`; at the deadline the timer thread requests stop on `stop`
// (if not null). disarm() ends it and tells whether it fired; after it, the
// timer thread no longer touches `stop`. Arming and disarming cost a few
// plain stores and loads (no lock, no read-modify-write) where the kernel
// provides membarrier, two sequentially consistent stores elsewhere. A
// timer must be disarmed on the thread that armed it, as a mutex is
// unlocked by the thread that locked it.
class deadline_timer {
 public:
  using slot = steady_timer_thread::slot;
  using slot_block = steady_timer_thread::slot_block;

  deadline_timer(time_point deadline, duration limit, std::stop_source* stop) {
    slot_block* b = this_thread_slots;
    if (b == nullptr) [[unlikely]]
      b = first_block();
    while (b->in_use == full) [[unlikely]]
      b = next_block(*b);
    const int i = std::countr_one(b->in_use);
    bit_ = 1u << i;
    b->in_use |= bit_;
    block_ = b;
    slot_ = &b->slots[i];
    slot& s = *slot_;
    const duration::rep d = deadline.time_since_epoch().count();
    s.deadline.store(d, std::memory_order_relaxed);
    s.limit.store(limit.count(), std::memory_order_relaxed);
    s.stop.store(stop, std::memory_order_relaxed);
    b->arms.store(b->arms.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (b->asymmetric) {
      s.armed.store(1, std::memory_order_release);
      std::atomic_signal_fence(std::memory_order_seq_cst);
    } else {
      s.armed.store(1, std::memory_order_seq_cst);
    }
    if (d < b->timer->wake_at()) [[unlikely]]
      b->timer->kick();
  }
  deadline_timer(const deadline_timer&) = delete;
  deadline_timer& operator=(const deadline_timer&) = delete;
  ~deadline_timer() {
    if (slot_ != nullptr) disarm();
  }

  // Ends the timer; true when it fired (stop was requested by it).
  bool disarm() noexcept {
    slot& s = *slot_;
    if (block_->asymmetric) {
      s.armed.store(0, std::memory_order_relaxed);
      std::atomic_signal_fence(std::memory_order_seq_cst);
    } else {
      s.armed.store(0, std::memory_order_seq_cst);
    }
    if (s.claimed.load(std::memory_order_seq_cst) != 0) [[unlikely]]
      wait_unclaimed(s);
    const bool fired = s.fired.load(std::memory_order_relaxed);
    if (fired) [[unlikely]]
      s.fired.store(false, std::memory_order_relaxed);  // for the slot's next arm
    block_->in_use &= ~bit_;
    slot_ = nullptr;
    return fired;
  }

 private:
  static constexpr std::uint32_t full = (1u << slot_block::size) - 1;

  [[gnu::noinline]] static slot_block* first_block() {
    slot_block* b = &steady_timer_thread::instance().acquire_block();
    this_thread_slots_owner.armed = true;  // registers the thread-exit release
    this_thread_slots = b;
    return b;
  }
  [[gnu::noinline]] static slot_block* next_block(slot_block& b) {
    if (b.more == nullptr) b.more = &b.timer->acquire_block();
    return b.more;
  }
  [[gnu::noinline]] static void wait_unclaimed(slot& s) noexcept {
    while (s.claimed.load(std::memory_order_acquire) != 0) s.claimed.wait(1, std::memory_order_acquire);
  }

  slot_block* block_ = nullptr;
  slot* slot_ = nullptr;
  std::uint32_t bit_ = 0;
};

}  // namespace detail

/// The real clock: std::chrono::steady_clock, with timers on one shared
/// background thread.
struct steady_clock {
  using duration = resilience::duration;
  using time_point = resilience::time_point;

  time_point now() const noexcept { return std::chrono::steady_clock::now(); }

  bool sleep_until(time_point deadline, std::stop_token stop) const {
    std::mutex m;
    std::condition_variable_any cv;
    std::unique_lock lock{m};
    // The predicate is false until the deadline: only a stop request wakes early.
    return !cv.wait_until(lock, stop, deadline, [] { return false; }) && !stop.stop_requested();
  }

  timer_id call_at(time_point deadline, std::function<void()> fn) const {
    return detail::steady_timer_thread::instance().call_at(deadline, std::move(fn));
  }

  bool cancel(timer_id id) const noexcept { return detail::steady_timer_thread::instance().cancel(id); }
};

namespace detail {

class manual_clock_state final : public clock_source {
 public:
  explicit manual_clock_state(time_point start, bool auto_advance) : now_{start.time_since_epoch().count()}, auto_advance_{auto_advance} {}

  time_point now() const noexcept override { return time_point{duration{now_.load(std::memory_order_acquire)}}; }

  bool sleep_until(time_point deadline, std::stop_token stop) const override {
    if (deadline <= now()) return true;
    if (stop.stop_requested()) return false;
    if (auto_advance_) {
      advance_to(deadline);
      return true;
    }
    std::unique_lock lock{mutex_};
    const timer_id id = ++last_id_;
    bool woken = false;
    queue_.emplace(key{deadline, id}, entry{{}, &woken});
    ++sleepers_;
    parked_cv_.notify_all();
    const bool reached = wake_cv_.wait(lock, stop, [&] { return woken; });
    --sleepers_;
    if (!reached) queue_.erase(key{deadline, id});
    return reached;
  }

  timer_id call_at(time_point deadline, std::function<void()> fn) const override {
    std::unique_lock lock{mutex_};
    const timer_id id = ++last_id_;
    if (deadline <= now()) {
      lock.unlock();
      fn();
      return id;
    }
    queue_.emplace(key{deadline, id}, entry{std::move(fn), nullptr});
    parked_cv_.notify_all();
    return id;
  }

  bool cancel(timer_id id) const noexcept override {
    std::lock_guard lock{mutex_};
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if (it->first.second == id && it->second.fn) {
        queue_.erase(it);
        return true;
      }
    }
    return false;
  }

  // Moves time to t, waking sleepers and firing timers in deadline order
  // (first in, first out on ties), with now() set to each deadline first.
  void advance_to(time_point t) const {
    std::unique_lock lock{advance_mutex_};  // one advancer at a time keeps the order total
    std::unique_lock q{mutex_};
    while (!queue_.empty() && queue_.begin()->first.first <= t) {
      auto node = queue_.extract(queue_.begin());
      store_max(node.key().first);
      if (node.mapped().fn) {
        q.unlock();
        node.mapped().fn();
        q.lock();
      } else {
        *node.mapped().woken = true;
        wake_cv_.notify_all();
      }
    }
    store_max(t);
  }

  void wait_for_sleepers(std::size_t n) const {
    std::unique_lock lock{mutex_};
    parked_cv_.wait(lock, [&] { return sleepers_ >= n; });
  }

  std::size_t sleepers() const {
    std::lock_guard lock{mutex_};
    return sleepers_;
  }

  std::size_t pending_timers() const {
    std::lock_guard lock{mutex_};
    return static_cast<std::size_t>(std::count_if(queue_.begin(), queue_.end(), [](const auto& e) { return e.second.fn != nullptr; }));
  }

  std::optional<time_point> next_deadline() const {
    std::lock_guard lock{mutex_};
    if (queue_.empty()) return std::nullopt;
    return queue_.begin()->first.first;
  }

 private:
  struct entry {
    std::function<void()> fn;  // a timer, or empty for a sleeping thread
    bool* woken = nullptr;
  };
  using key = std::pair<time_point, timer_id>;

  void store_max(time_point t) const {
    auto cur = now_.load(std::memory_order_relaxed);
    const auto want = t.time_since_epoch().count();
    while (cur < want && !now_.compare_exchange_weak(cur, want, std::memory_order_acq_rel)) {
    }
  }

  mutable std::atomic<duration::rep> now_;
  bool auto_advance_;
  mutable std::mutex advance_mutex_;
  mutable std::mutex mutex_;
  mutable std::condition_variable_any wake_cv_;
  mutable std::condition_variable parked_cv_;
  mutable std::map<key, entry> queue_;
  mutable timer_id last_id_ = 0;
  mutable std::size_t sleepers_ = 0;
};

}  // namespace detail

/// Virtual time for tests. Time moves only through advance()/set(), or, in
/// auto-advance mode, whenever a thread sleeps. Copies share one time line.
class manual_clock {
 public:
  using duration = resilience::duration;
  using time_point = resilience::time_point;

  /// Tag: in auto-advance mode a sleep jumps time to its deadline at once
  /// (firing earlier timers in order); meant for single-threaded tests.
  struct auto_advance_t {
    explicit auto_advance_t() = default;
  };
  static constexpr auto_advance_t auto_advance{};

  /// Starts at time_point{} + start (an arbitrary epoch; only differences matter).
  explicit manual_clock(duration start = std::chrono::hours{1})
      : state_{std::make_shared<detail::manual_clock_state>(time_point{start}, false)} {}
  manual_clock(auto_advance_t, duration start = std::chrono::hours{1})
      : state_{std::make_shared<detail::manual_clock_state>(time_point{start}, true)} {}

  time_point now() const noexcept { return state_->now(); }
  /// Parks the calling thread until time reaches deadline (true) or stop is requested (false).
  bool sleep_until(time_point deadline, std::stop_token stop = {}) const { return state_->sleep_until(deadline, std::move(stop)); }
  /// Runs fn on the advancing thread when time reaches deadline (at once if already due).
  timer_id call_at(time_point deadline, std::function<void()> fn) const { return state_->call_at(deadline, std::move(fn)); }
  bool cancel(timer_id id) const noexcept { return state_->cancel(id); }

  /// Moves time forward by d (negative d is an error).
  void advance(duration d) const {
    if (d < duration::zero()) throw std::invalid_argument{"manual_clock::advance: negative duration"};
    state_->advance_to(now() + d);
  }
  /// Moves time forward to t; t before now() is an error (time never goes back).
  void set(time_point t) const {
    if (t < now()) throw std::invalid_argument{"manual_clock::set: time point is in the past"};
    state_->advance_to(t);
  }
  /// Blocks (without timing out) until at least n threads are parked in sleep_until.
  void wait_for_sleepers(std::size_t n) const { state_->wait_for_sleepers(n); }
  /// Threads currently parked in sleep_until.
  std::size_t sleepers() const { return state_->sleepers(); }
  /// Timers scheduled and not yet fired or cancelled.
  std::size_t pending_timers() const { return state_->pending_timers(); }
  /// The earliest deadline of a parked thread or timer, if any.
  std::optional<time_point> next_deadline() const { return state_->next_deadline(); }
  /// Advances to the next deadline (if any); returns whether there was one.
  bool advance_to_next() const {
    auto next = state_->next_deadline();
    if (!next) return false;
    state_->advance_to(std::max(*next, now()));
    return true;
  }

 private:
  friend class clock_ref;
  std::shared_ptr<detail::manual_clock_state> state_;
};

/// A copyable handle to any clock; the default is the real steady clock.
/// Policies and call contexts hold one.
class clock_ref {
 public:
  using duration = resilience::duration;
  using time_point = resilience::time_point;

  clock_ref() noexcept = default;
  clock_ref(steady_clock) noexcept {}
  clock_ref(const manual_clock& c) noexcept : source_{c.state_} {}
  explicit clock_ref(std::shared_ptr<const clock_source> source) noexcept : source_{std::move(source)} {}

  time_point now() const noexcept { return source_ ? source_->now() : time_point{std::chrono::steady_clock::now()}; }
  bool sleep_until(time_point deadline, std::stop_token stop = {}) const {
    return source_ ? source_->sleep_until(deadline, std::move(stop)) : steady_clock{}.sleep_until(deadline, std::move(stop));
  }
  timer_id call_at(time_point deadline, std::function<void()> fn) const {
    return source_ ? source_->call_at(deadline, std::move(fn)) : steady_clock{}.call_at(deadline, std::move(fn));
  }
  bool cancel(timer_id id) const noexcept { return source_ ? source_->cancel(id) : steady_clock{}.cancel(id); }
  /// True for the real steady clock.
  bool is_steady() const noexcept { return source_ == nullptr; }

  friend bool operator==(const clock_ref& a, const clock_ref& b) noexcept { return a.source_ == b.source_; }

 private:
  std::shared_ptr<const clock_source> source_;
};

static_assert(timer_clock<steady_clock>);
static_assert(timer_clock<manual_clock>);
static_assert(timer_clock<clock_ref>);

}  // namespace v1
}  // namespace resilience
