// resilience/bulkhead.hpp: a limit on how many calls run at once, so one
// slow dependency cannot take every thread of the process with it.
//
//   resilience::bulkhead llm{{.name = "llm", .max_concurrent_calls = 4, .max_wait = 2s}};
//   resilience::resilient infer{call_llm, llm};   // a fifth caller waits up to 2 s, then gets bulkhead_full_error
//   if (auto permit = llm.try_acquire()) {         // or hold a slot yourself, released at scope end
//     summarize(report);
//   }
//
// Copies of a bulkhead share one set of slots. Waiting is measured on the
// bulkhead's clock: on a manual_clock a waiter parks until the test moves
// time or a slot is released.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <type_traits>
#include <utility>

#include "clock.hpp"
#include "context.hpp"
#include "errors.hpp"
#include "events.hpp"
#include "metric_snapshot.hpp"
#include "outcome.hpp"

namespace resilience {
inline namespace v1 {

/// A bulkhead's series (bulkhead_*{name}): written when a metrics_registry watches it.
inline constexpr metric_family bulkhead_rejections_family{"bulkhead_rejections_total", metric_type::counter,
                                                          "Calls a bulkhead refused because it was full.", 7};
inline constexpr metric_family bulkhead_in_flight_family{"bulkhead_in_flight_calls", metric_type::gauge,
                                                         "Calls running inside a bulkhead now.", 8};
inline constexpr metric_family bulkhead_waiting_family{"bulkhead_waiting_calls", metric_type::gauge,
                                                       "Callers waiting for a bulkhead slot now.", 9};
inline constexpr metric_family bulkhead_max_concurrent_family{"bulkhead_max_concurrent_calls", metric_type::gauge,
                                                              "A bulkhead's concurrency limit.", 10};
inline const metric_families bulkhead_metric_families{bulkhead_rejections_family, bulkhead_in_flight_family,
                                                      bulkhead_waiting_family, bulkhead_max_concurrent_family};

namespace detail {
inline constexpr event_metric bulkhead_rejected_metrics[] = {
    {&bulkhead_rejections_family, {{{"name", "source"}}}, nullptr, "bulkhead"}};
}  // namespace detail

/// A bulkhead refused a call. Source: its name. Fields: max_concurrent_calls.
inline constexpr event_kind bulkhead_rejected_event{
    "bulkhead_rejected", log_level::warning, {.source_key = "name", .metrics = detail::bulkhead_rejected_metrics}};

/// A bulkhead's rejection kind: "bulkhead_full".
class bulkhead_full_kind_t final : public rejection_kind {
 public:
  constexpr bulkhead_full_kind_t() noexcept : rejection_kind{"bulkhead_full"} {}
  std::string message(const rejection& r) const override;
  [[noreturn]] void raise(const rejection& r) const override;
};
/// The kind of a bulkhead's rejection.
inline constexpr bulkhead_full_kind_t bulkhead_full_kind{};

/// A bulkhead had no free slot.
class bulkhead_full_error : public rejected_error {
 public:
  explicit bulkhead_full_error(std::string name = {})
      : rejected_error{bulkhead_full_kind, name, duration::zero(), detail::named("bulkhead", name) + " is full"} {}
};

inline std::string bulkhead_full_kind_t::message(const rejection& r) const {
  return detail::named("bulkhead", r.source) + " is full";
}
inline void bulkhead_full_kind_t::raise(const rejection& r) const { throw bulkhead_full_error{std::string{r.source}}; }

/// Configuration of a bulkhead. Checked when the bulkhead is built.
struct bulkhead_options {
  std::string name{};                     ///< names the bulkhead in rejections, events and stats
  clock_ref clock{};                      ///< measures max_wait (default: the real steady clock)
  std::size_t max_concurrent_calls = 25;  ///< calls allowed to run at once (>= 1)
  duration max_wait =
      duration::zero();  ///< how long a call may wait for a slot (0 = reject at once; >= 0; duration::max(): no cap)
};

/// A snapshot of a bulkhead's counters.
struct bulkhead_stats {
  std::size_t max_concurrent_calls = 0;  ///< the limit
  std::size_t in_flight = 0;             ///< slots taken now
  std::size_t waiting = 0;               ///< callers waiting for a slot now
  std::uint64_t rejected = 0;            ///< calls refused since the bulkhead was built
};

namespace detail {

// The slots shared by every copy of one bulkhead: one word, [waiting:32 |
// in_flight:32]. Taking a slot is one compare-and-swap and giving it back one
// fetch_sub, which also tells whether anyone waits: a permit costs those two
// read-modify-writes and nothing else. Only waiters take the mutex.
class bulkhead_state {
 public:
  enum class wait_result : std::uint8_t { admitted, full, cancelled };

  explicit bulkhead_state(bulkhead_options o) : opts_{std::move(o)} {
    if (opts_.max_concurrent_calls == 0) throw std::invalid_argument{"bulkhead: max_concurrent_calls must be >= 1"};
    if (opts_.max_concurrent_calls > 0xffffffffu)
      throw std::invalid_argument{"bulkhead: max_concurrent_calls must be <= 4294967295"};
    if (opts_.max_wait < duration::zero()) throw std::invalid_argument{"bulkhead: max_wait must be >= 0"};
  }

  const bulkhead_options& options() const noexcept { return opts_; }
  event_hub& hub() noexcept { return hub_; }

  bool try_take() noexcept {
    std::uint64_t w = slots_.load(std::memory_order_relaxed);
    do {
      if (in_flight(w) >= opts_.max_concurrent_calls) return false;
    } while (!slots_.compare_exchange_weak(w, w + 1, std::memory_order_acquire, std::memory_order_relaxed));
    return true;
  }

  void release() noexcept {
    // One modification order holds both counts: either a waiter registered
    // before this release, and the release sees it and wakes one, or after,
    // and the waiter's own retry sees the free slot.
    if (waiting(slots_.fetch_sub(1, std::memory_order_release)) != 0) [[unlikely]]
      wake_one();
  }

  // Takes a slot, waiting up to max_wait (and never past `deadline`) for one.
  // What the clock's sleep_until throws propagates (no slot held): the
  // pipeline makes it the call's failure.
  wait_result take(const std::stop_token& stop, time_point deadline) {
    if (try_take()) [[likely]]
      return wait_result::admitted;
    return take_waiting(stop, deadline);
  }

  // Counts and reports a refusal.
  [[gnu::noinline]] void refuse() noexcept {
    rejected_.fetch_add(1, std::memory_order_relaxed);
    detail::emit(&hub_, [&] {
      event e{bulkhead_rejected_event, opts_.name};
      e.with("max_concurrent_calls", opts_.max_concurrent_calls);
      return e;
    });
  }

  rejection make_rejection(wait_result r) const noexcept {
    return rejection{
        .kind = r == wait_result::cancelled ? static_cast<const rejection_kind*>(&cancelled_kind) : &bulkhead_full_kind,
        .source = opts_.name};
  }

  bulkhead_stats stats() const noexcept {
    const std::uint64_t w = slots_.load(std::memory_order_relaxed);
    return {opts_.max_concurrent_calls, in_flight(w), waiting(w), rejected_.load(std::memory_order_relaxed)};
  }

 private:
  static constexpr std::uint64_t one_waiter = std::uint64_t{1} << 32;
  static constexpr std::size_t in_flight(std::uint64_t w) noexcept { return static_cast<std::uint32_t>(w); }
  static constexpr std::size_t waiting(std::uint64_t w) noexcept { return static_cast<std::size_t>(w >> 32); }

  [[gnu::noinline]] wait_result take_waiting(const std::stop_token& stop, time_point deadline) {
    if (opts_.max_wait > duration::zero() && !stop.stop_requested()) {
      const time_point now = opts_.clock.now();
      const time_point until = std::min(saturating_add(now, opts_.max_wait), deadline);
      if (until > now) {
        wait_result r = wait_result::full;
        try {
          r = wait(stop, until);
        } catch (const std::bad_alloc&) {
          // Out of memory while queueing: the caller is refused like any other.
        }
        if (r != wait_result::full) return r;
      }
    }
    if (stop.stop_requested()) return wait_result::cancelled;
    refuse();
    return wait_result::full;
  }

  wait_result wait(const std::stop_token& stop, time_point until) {
    for (;;) {
      std::stop_source wake;
      {
        std::lock_guard lock{mutex_};
        queue_.push_back(&wake);
        slots_.fetch_add(one_waiter, std::memory_order_relaxed);
        if (try_take()) {
          forget(wake);
          return wait_result::admitted;
        }
      }
      bool reached = false;
      try {
        // The caller's stop request ends the wait as a released slot does.
        std::stop_callback on_stop{stop, [&wake] { wake.request_stop(); }};
        reached = opts_.clock.sleep_until(until, wake.get_token());
      } catch (...) {
        std::lock_guard lock{mutex_};
        forget(wake);  // never leave a pointer to this frame in the queue
        throw;
      }
      {
        std::lock_guard lock{mutex_};
        forget(wake);
      }
      if (stop.stop_requested()) return wait_result::cancelled;
      if (try_take()) return wait_result::admitted;
      if (reached || opts_.clock.now() >= until) return wait_result::full;
      // Woken for a slot another caller took first: wait again.
    }
  }

  // Under mutex_: drops `wake` from the queue if a releaser did not pop it.
  void forget(std::stop_source& wake) noexcept {
    if (auto it = std::find(queue_.begin(), queue_.end(), &wake); it != queue_.end()) queue_.erase(it);
    slots_.fetch_sub(one_waiter, std::memory_order_relaxed);
  }

  [[gnu::noinline]] void wake_one() noexcept {
    std::lock_guard lock{mutex_};
    if (queue_.empty()) return;
    queue_.front()->request_stop();
    queue_.pop_front();
  }

  const bulkhead_options opts_;
  alignas(64) std::atomic<std::uint64_t> slots_{0};
  alignas(64) std::atomic<std::uint64_t> rejected_{0};
  std::mutex mutex_;
  std::deque<std::stop_source*> queue_;  // waiters, first come first woken
  event_hub hub_;
};

}  // namespace detail

/// A concurrency limit: a shared handle (copies share one set of slots),
/// usable as a policy in resilient<> or through RAII permits.
class bulkhead {
 public:
  /// One taken slot, released when the permit is destroyed. Empty when the
  /// bulkhead refused. The bulkhead must outlive its permits.
  class permit {
   public:
    /// An empty permit.
    permit() noexcept = default;
    permit(permit&& o) noexcept : st_{std::exchange(o.st_, nullptr)} {}
    permit& operator=(permit&& o) noexcept {
      if (this != &o) {
        release();
        st_ = std::exchange(o.st_, nullptr);
      }
      return *this;
    }
    ~permit() { release(); }

    /// True when the permit holds a slot.
    explicit operator bool() const noexcept { return st_ != nullptr; }
    /// Gives the slot back early.
    void release() noexcept {
      if (st_ != nullptr) std::exchange(st_, nullptr)->release();
    }

   private:
    friend class bulkhead;
    explicit permit(detail::bulkhead_state* st) noexcept : st_{st} {}
    detail::bulkhead_state* st_ = nullptr;
  };

  /// A bulkhead with the given options; throws std::invalid_argument naming a bad field.
  explicit bulkhead(bulkhead_options options = {})
      : st_{std::make_shared<detail::bulkhead_state>(std::move(options))} {}

  /// The bulkhead's name.
  const std::string& name() const noexcept { return st_->options().name; }
  /// Its configuration.
  const bulkhead_options& options() const noexcept { return st_->options(); }
  /// The clock max_wait is measured on (a pipeline's clock must be the same).
  const clock_ref& clock() const noexcept { return st_->options().clock; }
  /// A snapshot of its counters.
  bulkhead_stats stats() const noexcept { return st_->stats(); }
  /// This bulkhead's event hub (bulkhead_rejected).
  event_hub& events() const noexcept { return st_->hub(); }

  /// A slot if one is free now (never waits); an empty permit otherwise.
  [[nodiscard]] permit try_acquire() const noexcept {
    if (st_->try_take()) return permit{st_.get()};
    st_->refuse();
    return permit{};
  }

  /// A slot, waiting up to max_wait for one (less if `stop` is requested);
  /// an empty permit when none came free.
  [[nodiscard]] permit acquire(std::stop_token stop = {}) const {
    if (st_->take(stop, no_deadline) == detail::bulkhead_state::wait_result::admitted) return permit{st_.get()};
    return permit{};
  }

  /// Like acquire(), but throws bulkhead_full_error (or cancelled_error) instead of returning an empty permit.
  [[nodiscard]] permit enter(std::stop_token stop = {}) const {
    const auto r = st_->take(stop, no_deadline);
    if (r != detail::bulkhead_state::wait_result::admitted) throw_rejection(st_->make_rejection(r));
    return permit{st_.get()};
  }

  /// The policy step: waits for a slot (up to max_wait, never past the
  /// call's deadline), runs next, and frees the slot; rejects with
  /// bulkhead_full_kind (cancelled_kind if the call's stop_token fired).
  template <class Next>
  auto execute(call_context& ctx, Next&& next) const {
    using O = std::invoke_result_t<Next&, call_context&>;
    auto* st = st_.get();
    const auto r = st->take(ctx.stop, ctx.deadline);
    if (r != detail::bulkhead_state::wait_result::admitted) return O{st->make_rejection(r)};
    const permit held{st};
    return next(ctx);
  }

  /// True when both handles share one bulkhead.
  friend bool operator==(const bulkhead& a, const bulkhead& b) noexcept { return a.st_ == b.st_; }

  /// Its series, labelled name: calls in flight, callers waiting, the limit, rejections.
  friend void collect_metrics(const bulkhead& b, metric_snapshot& s) {
    using enum metric_type;
    const std::string& name = b.name();
    const auto st = b.stats();
    s.cover("bulkhead", name);
    s.add("bulkhead_in_flight_calls", gauge, {}, {{"name", name}}, static_cast<double>(st.in_flight));
    s.add("bulkhead_waiting_calls", gauge, {}, {{"name", name}}, static_cast<double>(st.waiting));
    s.add("bulkhead_max_concurrent_calls", gauge, {}, {{"name", name}}, static_cast<double>(st.max_concurrent_calls));
    s.add("bulkhead_rejections_total", counter, {}, {{"name", name}}, static_cast<double>(st.rejected));
  }
  /// metrics_registry::watch(bulkhead): the same bulkhead again does nothing;
  /// another one with the same name throws std::invalid_argument naming it.
  friend void watch_metrics(const bulkhead& b, metric_watch& w) {
    if (!w.claim("bulkhead", b.name(), b.st_.get())) return;
    auto keep = std::make_shared<const bulkhead>(b);
    w.collect([keep](metric_snapshot& s) { collect_metrics(*keep, s); });
    w.count_events(keep->events());
    w.keep(keep);
  }

 private:
  std::shared_ptr<detail::bulkhead_state> st_;
};

}  // namespace v1
}  // namespace resilience
