// resilience/detail/timer_service.hpp: the real clock's one timer service.
//
// One thread per process keeps the real clock's time for the whole library,
// started on first use and joined at exit. It serves two kinds of timers:
//  - cooperative timeouts (timeout.hpp), one per call through a timeout: too
//    many for a mutex, so each thread arms and disarms slots of its own
//    without a lock (deadline_timer below), and the service scans them and
//    fires a due one by requesting stop on the call's stop_source;
//  - call_at timers (steady_clock::call_at, clock_ref::call_at, post_at):
//    a map under the service's mutex.
// The service thread runs no user code but stop callbacks. A due call_at
// callback is handed, in deadline order, to a callback thread (started with
// the first call_at), which runs it: a callback may block (an async
// timeout's continuation runs a fallback function, say), and while it does,
// cooperative timeouts and later call_at deadlines still come due on time.
// The callback thread never waits on time; only the service thread does.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
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
namespace detail {

// Runs a timer callback. Timer callbacks must not throw, on every clock: an
// exception escaping one calls std::terminate, as one escaping a
// std::thread's function does. Nobody could catch it on the real clock's
// callback thread, and on manual_clock it would leave later timers unfired.
// The library's own callbacks catch and route failures into their call.
// While a timer callback runs, its thread says so (in_timer_callback), so
// that a continuation handed to it (a coroutine's resumption) can move to an
// executor instead of holding up the timers behind it.
inline constinit thread_local int in_timer_callback = 0;
inline void run_timer_callback(std::function<void()>& fn) noexcept {
  ++in_timer_callback;
  fn();
  --in_timer_callback;
}

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
  static constexpr int membarrier_query = 0;                            // MEMBARRIER_CMD_QUERY
  static constexpr int membarrier_private_expedited = 1 << 3;           // MEMBARRIER_CMD_PRIVATE_EXPEDITED
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

// The real clock's timer service (see the banner). Cooperative timeouts:
// each thread owns a block of slots that it arms and disarms with plain
// stores, and the service thread scans the blocks. It sleeps until the
// earliest deadline it knows of (slot or call_at timer), and a thread arming
// a slot wakes it only for an earlier one; while timeouts are in use it also
// looks every `shortest recent limit`, so that a stream of calls never has
// to wake it, and it stops looking after a quiet period. call_at timers take
// the mutex (they are rarer: async retries and timeouts), and wake the
// thread only for an earlier deadline too.
class timer_service {
 public:
  // The same types as resilience::duration and resilience::time_point
  // (clock.hpp includes this header before it names them).
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<std::chrono::steady_clock, duration>;
  using callback = std::function<void()>;
  static constexpr time_point no_deadline = time_point::max();

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

  // A thread's slots. The timer thread reads them under its mutex and
  // writes only the claim and fired flags; a block outlives its thread and
  // is reused by a later one.
  struct alignas(64) slot_block {
    static constexpr int size = 8;
    slot slots[size];
    std::atomic<std::uint32_t> arms{0};  // counts the owner's arms, so the timer sees activity
    std::uint32_t in_use = 0;            // owner only: a bit per slot
    bool asymmetric = false;             // asymmetric_fence::available(), copied for the owner
    timer_service* timer = nullptr;
    slot_block* more = nullptr;  // owner only: the next block when more than `size` are nested
    // Under the timer thread's mutex:
    slot_block* next = nullptr;
    std::uint32_t seen_arms = 0;
    bool owned = false;
  };

  // The process's timer service. Its state is never destroyed (threads may
  // return their slots at any point of the exit sequence, even after the
  // statics built after it are gone); its threads are joined at exit, after
  // which timers no longer fire, and the call_at callbacks still pending
  // are destroyed unrun.
  static timer_service& instance() {
    static timer_service* const timer = new timer_service;
    static const stop_at_exit stopper{*timer};
    return *timer;
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

  // Runs fn on the callback thread once the real clock reaches deadline (at
  // once if it has). Returns the timer's id (never 0).
  std::uint64_t call_at(time_point deadline, callback fn) {
    std::lock_guard lock{mutex_};
    const std::uint64_t id = ++last_id_;
    start();
    if (!callback_thread_.joinable() && !stopped_)
      callback_thread_ = std::jthread{[this](std::stop_token st) { run_callbacks(st); }};
    timers_.emplace(key{deadline, id}, std::move(fn));
    // The thread wakes by itself at wake_at() and then looks at every timer;
    // only an earlier deadline needs a wake-up (a syscall).
    if (deadline.time_since_epoch().count() < wake_at_.load(std::memory_order_relaxed)) kick_locked();
    return id;
  }

  // Cancels a call_at timer; true when its callback had not started and now
  // never will (a due callback still queued for the callback thread counts).
  bool cancel(std::uint64_t id) noexcept {
    // The callback dies after the locks are released: its destructor may call_at.
    std::map<key, callback>::node_type node;
    callback queued;
    std::lock_guard lock{mutex_};
    for (auto it = timers_.begin(); it != timers_.end(); ++it) {
      if (it->first.second == id) {
        node = timers_.extract(it);
        return true;
      }
    }
    std::lock_guard due_lock{due_mutex_};
    for (auto it = due_.begin(); it != due_.end(); ++it) {
      if (it->first == id) {
        queued = std::move(it->second);
        due_.erase(it);
        return true;
      }
    }
    return false;
  }

  timer_service(const timer_service&) = delete;
  timer_service& operator=(const timer_service&) = delete;

 private:
  using key = std::pair<time_point, std::uint64_t>;

  // The shortest poll period: shorter limits wake the thread at each arm
  // rather than have it poll faster than this.
  static constexpr duration min_poll = std::chrono::microseconds{100};

  struct stop_at_exit {
    timer_service& timer;
    ~stop_at_exit() {
      {
        std::lock_guard lock{timer.mutex_};
        timer.stopped_ = true;
      }
      for (std::jthread* t : {&timer.thread_, &timer.callback_thread_}) {
        if (t->joinable()) {
          t->request_stop();
          t->join();
        }
      }
      // The callbacks that never ran die here, outside the locks (their
      // destructors may call_at; such a timer never fires).
      std::map<key, callback> pending;
      std::deque<std::pair<std::uint64_t, callback>> due;
      {
        std::lock_guard lock{timer.mutex_};
        pending.swap(timer.timers_);
        std::lock_guard due_lock{timer.due_mutex_};
        due.swap(timer.due_);
      }
    }
  };

  timer_service() : asymmetric_{asymmetric_fence::available()} {}
  ~timer_service() = delete;  // see instance()

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
        if (s.armed.load(std::memory_order_seq_cst) != 0)
          earliest = std::min(earliest, at(s.deadline.load(std::memory_order_relaxed)));
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
      else unclaim(*s);  // under the mutex: its thread may exit as soon as it sees this
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
      time_point target = claim_due(t, due);
      if (!due.empty()) {
        fire(lock, due, t);  // stop requests first: they never queue behind a callback
        continue;
      }
      target = std::min(target, hand_over_due(t));
      if (active_) target = std::min(target, (t > no_deadline - poll_ ? no_deadline : t + poll_));
      active_ = false;
      poll_ = duration::max();
      // Publish the plan, then look again: a thread that armed a slot before
      // seeing this plan is visible now (or it saw the plan and kicks us).
      wake_at_.store(target.time_since_epoch().count(), std::memory_order_seq_cst);
      if (asymmetric_) asymmetric_fence::heavy();
      if (earliest_armed() < target) continue;
      if (target == no_deadline) cv_.wait(lock, st, [&] { return kicked_; });
      else cv_.wait_until(lock, st, target, [&] { return kicked_; });
    }
  }

  // Moves the call_at timers due by `now` to the callback thread, in
  // deadline order; returns the earliest deadline of the others.
  time_point hand_over_due(time_point now) {
    if (timers_.empty() || timers_.begin()->first.first > now)
      return timers_.empty() ? no_deadline : timers_.begin()->first.first;
    {
      std::lock_guard due_lock{due_mutex_};
      while (!timers_.empty() && timers_.begin()->first.first <= now) {
        auto node = timers_.extract(timers_.begin());
        due_.emplace_back(node.key().second, std::move(node.mapped()));
      }
    }
    due_cv_.notify_one();
    return timers_.empty() ? no_deadline : timers_.begin()->first.first;
  }

  // The callback thread: runs due call_at callbacks one at a time, with no
  // lock held (a callback may call_at, cancel, or block).
  void run_callbacks(std::stop_token st) {
    std::unique_lock lock{due_mutex_};
    while (due_cv_.wait(lock, st, [&] { return !due_.empty(); }) && !st.stop_requested()) {
      callback fn = std::move(due_.front().second);
      due_.pop_front();
      lock.unlock();
      run_timer_callback(fn);
      fn = nullptr;  // what it holds dies outside the lock too
      lock.lock();
    }
  }

  const bool asymmetric_;
  std::atomic<duration::rep> wake_at_{no_deadline.time_since_epoch().count()};
  std::mutex mutex_;
  std::condition_variable_any cv_;
  bool kicked_ = false;
  slot_block* blocks_ = nullptr;
  bool active_ = false;
  duration poll_ = duration::max();
  bool stopped_ = false;
  std::map<key, callback> timers_;  // call_at timers not yet due
  std::uint64_t last_id_ = 0;
  std::jthread thread_;
  std::jthread callback_thread_;  // started under mutex_ by call_at, joined after thread_
  // Lock order: mutex_, then due_mutex_.
  std::mutex due_mutex_;
  std::condition_variable_any due_cv_;
  std::deque<std::pair<std::uint64_t, callback>> due_;  // due call_at callbacks, in deadline order
};

// The calling thread's first block; constinit, so reading it costs no
// initialization check. A second thread_local, with a destructor, returns
// the blocks when the thread exits (a thread that arms a timeout after that,
// from another thread_local's destructor, keeps its block for good).
inline constinit thread_local timer_service::slot_block* this_thread_slots = nullptr;
struct this_thread_slots_release {
  bool armed = false;
  ~this_thread_slots_release() {
    if (timer_service::slot_block* b = std::exchange(this_thread_slots, nullptr)) b->timer->release_blocks(b);
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
  using duration = timer_service::duration;
  using time_point = timer_service::time_point;
  using slot = timer_service::slot;
  using slot_block = timer_service::slot_block;

  deadline_timer(time_point deadline, duration limit, std::stop_source* stop) {
    slot_block* b = this_thread_slots;
    if (b == nullptr) [[unlikely]]
      b = first_block();
    while (b->in_use == full) [[unlikely]] b = next_block(*b);
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
    slot_block* b = &timer_service::instance().acquire_block();
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
}  // namespace v1
}  // namespace resilience
