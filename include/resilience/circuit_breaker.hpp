// resilience/circuit_breaker.hpp: a circuit breaker that stops calling a
// dependency that keeps failing, and lets trial calls through later.
//
//   resilience::circuit_breaker factor_api{{.name = "factor_api"}};  // 5 failures in a row open it for 60 s
//   resilience::resilient fetch{fetch_emission_factor, resilience::retry{}, factor_api};
//   double f = factor_api.call(fetch_emission_factor, "electricity");  // or use it directly
//   {
//     auto scope = factor_api.enter();  // throws circuit_open_error while open
//     write_report();                   // an exception unwinding through `scope` counts as a failure
//   }
//
// States: closed (calls pass, failures are counted), open (calls are rejected
// until the break duration passes), half_open (up to half_open_max_calls
// trial calls pass; a failed trial reopens, success_threshold successful
// trials close). Copies of a circuit_breaker share one state; the
// process-wide registry global_circuit_breakers() shares breakers by name.
//
// A refusal carries retry_after: open, the exact time until a trial may
// pass; half_open with every trial slot taken, the latest that can be (if no
// trial answers, the period ends max_wait_in_half_open after it began and a
// trial passes one break later); isolated, zero, for "unknown": it stays
// open until reset(), and a retry falls back on its own backoff.
//
// The state machine and windows are breaker_state's (below); the bit
// layouts of its words, its striped counters and its observer list are in
// detail/breaker_word.hpp, breaker_windows.hpp, breaker_counters.hpp and
// breaker_observers.hpp.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "clock.hpp"
#include "context.hpp"
#include "detail/breaker_counters.hpp"
#include "detail/breaker_observers.hpp"
#include "detail/breaker_windows.hpp"
#include "detail/breaker_word.hpp"
#include "errors.hpp"
#include "events.hpp"
#include "failures.hpp"
#include "metric_snapshot.hpp"
#include "outcome.hpp"

namespace resilience {
inline namespace v1 {

/// The three states of a circuit breaker.
enum class circuit_state : std::uint8_t { closed = 0, open = 1, half_open = 2 };

/// "closed", "open" or "half_open".
constexpr std::string_view to_string(circuit_state s) noexcept {
  switch (s) {
    case circuit_state::closed: return "closed";
    case circuit_state::open: return "open";
    case circuit_state::half_open: return "half_open";
  }
  return "unknown";
}

/// The state named by to_string() (closed for any other text): reads an event's from/to/state fields.
constexpr circuit_state circuit_state_of(std::string_view name) noexcept {
  return name == "open" ? circuit_state::open : name == "half_open" ? circuit_state::half_open : circuit_state::closed;
}

/// A breaker's series (circuit_breaker_*{name}): written when a
/// metrics_registry watches it; transitions, rejections and the state also
/// come from its events for breakers nobody watches.
inline constexpr metric_family circuit_breaker_state_family{"circuit_breaker_state", metric_type::gauge,
                                                            "Circuit breaker state: 0 closed, 1 open, 2 half_open.", 1};
inline constexpr metric_family circuit_breaker_calls_family{"circuit_breaker_calls_total", metric_type::counter,
                                                            "Calls seen by a circuit breaker, by outcome.", 2};
inline constexpr metric_family circuit_breaker_transitions_family{
    "circuit_breaker_state_transitions_total", metric_type::counter, "Circuit breaker state transitions.", 3};
inline constexpr metric_family circuit_breaker_call_duration_family{
    "circuit_breaker_call_duration_seconds", metric_type::histogram, "Duration of calls through a circuit breaker.", 4};
inline constexpr metric_family circuit_breaker_failure_rate_family{
    "circuit_breaker_failure_rate", metric_type::gauge,
    "Failure rate the circuit breaker decides on, 0 to 1: its window's, or failures in a row / fail_max.", 5};
inline constexpr metric_family circuit_breaker_slow_calls_family{
    "circuit_breaker_slow_calls_total", metric_type::counter,
    "Calls slower than the circuit breaker's slow_call_duration.", 6};
inline const metric_families circuit_breaker_metric_families{
    circuit_breaker_state_family,         circuit_breaker_calls_family,        circuit_breaker_transitions_family,
    circuit_breaker_call_duration_family, circuit_breaker_failure_rate_family, circuit_breaker_slow_calls_family};

namespace detail {
inline constexpr event_metric circuit_state_changed_metrics[] = {
    {&circuit_breaker_transitions_family,
     {{{"name", "source"}, {"from", "from"}, {"to", "to"}}},
     nullptr,
     "circuit_breaker"},
    {&circuit_breaker_state_family,
     {{{"name", "source"}}},
     [](const event& e) {
       return static_cast<double>(static_cast<int>(circuit_state_of(e.get<std::string_view>("to"))));
     },
     "circuit_breaker"}};
inline constexpr event_metric circuit_rejected_metrics[] = {
    {&circuit_breaker_calls_family, {{{"name", "source"}, {"status", "=rejected"}}}, nullptr, "circuit_breaker"}};
}  // namespace detail

/// A circuit breaker changed state (once per transition). Source: its name.
/// Fields: from, to (to_string(circuit_state)). An error when it opens, info otherwise.
inline constexpr event_kind circuit_state_changed_event{
    "circuit_state_changed", log_level::info, {.source_key = "name", .metrics = detail::circuit_state_changed_metrics}};
/// A circuit breaker refused a call. Source: its name. Fields: state, retry_after.
inline constexpr event_kind circuit_rejected_event{
    "circuit_rejected", log_level::warning, {.source_key = "name", .metrics = detail::circuit_rejected_metrics}};

/// A circuit breaker's rejection kind: "circuit_open" (open, or every
/// half-open trial slot taken); retry_after is when a trial may pass.
class circuit_open_kind_t final : public rejection_kind {
 public:
  constexpr circuit_open_kind_t() noexcept : rejection_kind{"circuit_open"} {}
  std::string message(const rejection& r) const override;
  [[noreturn]] void raise(const rejection& r) const override;
};
/// The kind of a circuit breaker's rejection.
inline constexpr circuit_open_kind_t circuit_open_kind{};

/// A circuit breaker is open and refused the call.
class circuit_open_error : public rejected_error {
 public:
  explicit circuit_open_error(std::string name, duration retry_after = duration::zero())
      : rejected_error{
            circuit_open_kind, name, retry_after,
            detail::named("circuit breaker", name) + " is open; next trial in " + detail::seconds_text(retry_after)} {}
  /// The breaker's name.
  const std::string& name() const noexcept { return source(); }
};

inline std::string circuit_open_kind_t::message(const rejection& r) const {
  return detail::named("circuit breaker", r.source) + " is open; next trial in " + detail::seconds_text(r.retry_after);
}
inline void circuit_open_kind_t::raise(const rejection& r) const {
  throw circuit_open_error{std::string{r.source}, r.retry_after};
}

/// What decides that a closed breaker opens.
enum class breaker_window : std::uint8_t {
  consecutive,  ///< fail_max failures in a row (the default; reads no clock)
  count_based,  ///< failure or slow-call rate over the last window_size calls
  time_based,   ///< failure or slow-call rate over the last window_duration, kept in window_buckets buckets
};

/// How a call ended, as a circuit breaker counts it.
enum class call_status : std::uint8_t {
  success,   ///< the call returned (or threw an exception that is not recorded as a failure)
  failure,   ///< the call failed in a way that counts toward opening
  ignored,   ///< the call ended in an ignored exception or a foreign rejection: counts as neither
  rejected,  ///< the breaker refused the call
};

/// "success", "failure", "ignored" or "rejected".
constexpr std::string_view to_string(call_status s) noexcept {
  switch (s) {
    case call_status::success: return "success";
    case call_status::failure: return "failure";
    case call_status::ignored: return "ignored";
    case call_status::rejected: return "rejected";
  }
  return "unknown";
}

/// Configuration of a circuit_breaker. Checked when the breaker is built.
struct circuit_breaker_options {
  std::string name{};  ///< names the breaker in rejections, events, stats and the registry
  clock_ref clock{};   ///< where time comes from (default: the real steady clock)

  breaker_window window = breaker_window::consecutive;  ///< what opens the breaker (default: failures in a row)
  int fail_max = 5;                                     ///< consecutive mode: failures in a row that open it (>= 1)
  duration break_duration = std::chrono::seconds{60};  ///< how long it stays open before a trial (> 0, <= max_duration)

  std::size_t window_size = 100;                        ///< count_based: calls in the window (1..65535)
  duration window_duration = std::chrono::seconds{60};  ///< time_based: length of the window (> 0)
  std::size_t window_buckets = 10;                      ///< time_based: buckets the window slides by (1..1024)
  std::size_t minimum_calls = 20;                       ///< rate modes: calls in the window before it may open (>= 1)
  double failure_rate_threshold = 0.5;                  ///< rate modes: failure share that opens it, in (0, 1]
  duration slow_call_duration = duration::zero();       ///< rate modes: a call taking longer is slow (0 = off)
  double slow_call_rate_threshold = 1.0;                ///< rate modes: slow share that opens it, in (0, 1]

  int half_open_max_calls = 1;  ///< trial calls allowed at the same time in half_open (>= 1)
  int success_threshold = 1;    ///< successful trials that close it (>= 1)
  duration max_wait_in_half_open = std::chrono::seconds{
      60};  ///< half_open with every trial unanswered this long reopens (> 0; duration::max(): never)

  double break_duration_multiplier = 1.0;  ///< each reopening in a row multiplies the break by this (>= 1; 1 = fixed)
  duration max_break_duration = std::chrono::minutes{
      30};  ///< cap on the grown break (>= break_duration when multiplier > 1; duration::max(): no cap)

  /// What counts as a failure (default: every exception; a rejection counts
  /// only when its kind is the dependency's failure, as a timeout is); other
  /// exceptions and returned values count as successes, other rejections as
  /// neither. A results() predicate applies to calls returning its argument type.
  failures handle = failures::any();
  failures ignore = failures::none();  ///< what counts as neither (default: nothing); checked first
};

/// A snapshot of a breaker's state and counters. Call counts only grow
/// (reset() does not clear them), so they suit Prometheus counters.
struct circuit_breaker_stats {
  circuit_state state = circuit_state::closed;  ///< the state at the time of the snapshot
  bool isolated = false;                        ///< forced open by isolate()
  double failure_rate = 0;  ///< the rate it decides on: failures / calls in the window (rate modes); failures in a row
                            ///< / fail_max while closed, 1 while open or half-open (consecutive mode)
  double slow_call_rate = 0;     ///< slow calls / recorded calls in the window (rate modes; 0 otherwise)
  std::size_t window_calls = 0;  ///< recorded calls in the window (rate modes)
  int consecutive_failures = 0;  ///< failures in a row so far (consecutive mode, closed)
  duration break_duration{};     ///< the break the next (or current) opening lasts
  std::uint64_t successful = 0;  ///< calls recorded as successes
  std::uint64_t failed = 0;      ///< calls recorded as failures
  std::uint64_t rejected = 0;    ///< calls the breaker refused
  std::uint64_t ignored = 0;     ///< calls recorded as neither
  std::uint64_t slow = 0;        ///< calls slower than slow_call_duration (also counted as success or failure)
  /// Transitions by [from][to], indexed by circuit_state (closed 0, open 1, half_open 2).
  std::array<std::array<std::uint64_t, 3>, 3> transitions{};

  /// Calls the breaker saw in all.
  std::uint64_t calls() const noexcept { return successful + failed + rejected + ignored; }
  /// Transitions of any kind.
  std::uint64_t transition_count() const noexcept {
    std::uint64_t n = 0;
    for (const auto& row : transitions)
      for (auto v : row) n += v;
    return n;
  }
};

namespace detail {

constexpr circuit_state public_state(cb_phase p) noexcept {
  return p == cb_phase::isolated ? circuit_state::open : static_cast<circuit_state>(p);
}

// What acquire() hands to record(): which phase admitted the call.
struct cb_ticket {
  enum kind_t : std::uint8_t { rejected, closed, closed_untracked, trial };
  kind_t kind = rejected;
  bool timed = false;
  std::uint32_t gen = 0;
  time_point start{};
  duration retry_after{};
  circuit_state state = circuit_state::open;
};

inline void check_rate(double v, const char* what) {
  if (!(v > 0.0 && v <= 1.0))
    throw std::invalid_argument{std::string{"circuit_breaker: "} + what + " must be in (0, 1]"};
}

inline void validate(const circuit_breaker_options& o) {
  auto fail = [](const char* msg) { throw std::invalid_argument{std::string{"circuit_breaker: "} + msg}; };
  if (o.fail_max < 1) fail("fail_max must be >= 1");
  if (o.break_duration <= duration::zero()) fail("break_duration must be > 0");
  if (o.half_open_max_calls < 1) fail("half_open_max_calls must be >= 1");
  if (o.half_open_max_calls > 0x7fff) fail("half_open_max_calls must be <= 32767");
  if (o.success_threshold < 1) fail("success_threshold must be >= 1");
  if (o.success_threshold > 0x7fff) fail("success_threshold must be <= 32767");
  if (o.max_wait_in_half_open <= duration::zero()) fail("max_wait_in_half_open must be > 0");
  if (!(o.break_duration_multiplier >= 1.0) || !std::isfinite(o.break_duration_multiplier))
    fail("break_duration_multiplier must be a finite number >= 1");
  if (o.break_duration_multiplier > 1.0 && o.max_break_duration < o.break_duration)
    fail("max_break_duration must be >= break_duration");
  if (o.slow_call_duration < duration::zero()) fail("slow_call_duration must be >= 0");
  // Periods are bounded; the max_ options are caps and may be duration::max() (never).
  checked_duration(o.break_duration, "circuit_breaker: break_duration");
  checked_duration(o.window_duration, "circuit_breaker: window_duration");
  checked_duration(o.slow_call_duration, "circuit_breaker: slow_call_duration");
  check_rate(o.failure_rate_threshold, "failure_rate_threshold");
  check_rate(o.slow_call_rate_threshold, "slow_call_rate_threshold");
  switch (o.window) {
    case breaker_window::consecutive:
      if (o.slow_call_duration > duration::zero()) fail("slow_call_duration needs a count_based or time_based window");
      break;
    case breaker_window::count_based:
      if (o.window_size == 0) fail("window_size must be >= 1");
      if (o.window_size > 0xffff) fail("window_size must be <= 65535");
      if (o.minimum_calls == 0) fail("minimum_calls must be >= 1");
      if (o.minimum_calls > o.window_size) fail("minimum_calls must be <= window_size");
      break;
    case breaker_window::time_based:
      if (o.window_duration <= duration::zero()) fail("window_duration must be > 0");
      if (o.window_buckets == 0) fail("window_buckets must be >= 1");
      if (o.window_buckets > 1024) fail("window_buckets must be <= 1024");
      if (o.window_duration < duration{static_cast<duration::rep>(o.window_buckets)})
        fail("window_duration must be at least 1 ns per bucket");
      if (o.minimum_calls == 0) fail("minimum_calls must be >= 1");
      break;
  }
}

// Why `next` cannot replace `live`'s options in place (see
// circuit_breaker::reconfigure): the window's kind and size shape its
// storage, and slow-call tracking decides whether calls are timed at all.
struct reconfigure_conflict {
  const char* field;  // the option that differs
  const char* rule;   // why it cannot change at run time
};

inline std::optional<reconfigure_conflict> reconfigure_check(const circuit_breaker_options& live,
                                                             const circuit_breaker_options& next) {
  constexpr const char* fixed = "cannot change at run time (build a new breaker)";
  if (next.window != live.window) return reconfigure_conflict{"window", fixed};
  if (live.window == breaker_window::count_based && next.window_size != live.window_size)
    return reconfigure_conflict{"window_size", fixed};
  if (live.window == breaker_window::time_based && next.window_duration != live.window_duration)
    return reconfigure_conflict{"window_duration", fixed};
  if (live.window == breaker_window::time_based && next.window_buckets != live.window_buckets)
    return reconfigure_conflict{"window_buckets", fixed};
  if ((next.slow_call_duration > duration::zero()) != (live.slow_call_duration > duration::zero()))
    return reconfigure_conflict{"slow_call_duration",
                                "cannot turn slow-call tracking on or off at run time (build a new breaker)"};
  return std::nullopt;
}

class breaker_state;
// The breaker whose transition this thread is announcing, if any.
inline thread_local const breaker_state* announcing = nullptr;

// The shared state behind every copy of one circuit_breaker.
class breaker_state {
 public:
  explicit breaker_state(circuit_breaker_options o) : opts_{std::move(o)} {
    validate(opts_);
    store_thresholds(opts_);
    rate_mode_ = opts_.window != breaker_window::consecutive;
    slow_enabled_ = rate_mode_ && opts_.slow_call_duration > duration::zero();
    filters_ = !opts_.handle.handles_every_exception() || !opts_.ignore.handles_no_exception();
    results_ = opts_.handle.has_result_predicates() || opts_.ignore.has_result_predicates();
    timed_.store(slow_enabled_, std::memory_order_relaxed);
    if (opts_.window == breaker_window::count_based) {
      window_size_ = opts_.window_size;
      window_size_16_ = static_cast<std::uint16_t>(opts_.window_size);
      fastmod_m_ = ~std::uint64_t{0} / opts_.window_size + 1;
      slots_ = std::make_unique<std::atomic<std::uint32_t>[]>(opts_.window_size);
      for (std::size_t i = 0; i < opts_.window_size; ++i) slots_[i].store(0, std::memory_order_relaxed);
    } else if (opts_.window == breaker_window::time_based) {
      bucket_width_ = opts_.window_duration / static_cast<duration::rep>(opts_.window_buckets);
      // A power-of-two ring (at least window_buckets long) turns the bucket
      // index into a mask; the extra buckets hold stale stamps and read as empty.
      ring_mask_ = std::bit_ceil(opts_.window_buckets) - 1;
      buckets_ = std::make_unique<std::atomic<std::uint64_t>[]>(ring_mask_ + 1);
      for (std::size_t i = 0; i <= ring_mask_; ++i) buckets_[i].store(0, std::memory_order_relaxed);
    }
  }

  breaker_state(const breaker_state&) = delete;
  breaker_state& operator=(const breaker_state&) = delete;

  // The options as configured now (thresholds included).
  circuit_breaker_options options() const {
    std::lock_guard lock{options_mutex_};
    return opts_;
  }
  const std::string& name() const noexcept { return opts_.name; }
  const clock_ref& clock() const noexcept { return opts_.clock; }

  // Replaces the thresholds in place (see circuit_breaker::reconfigure).
  void reconfigure(const circuit_breaker_options& next) {
    std::lock_guard lock{options_mutex_};
    circuit_breaker_options merged = next;
    // The name, the clock and what counts as a failure are the breaker's identity and code: kept.
    merged.name = opts_.name;
    merged.clock = opts_.clock;
    merged.handle = opts_.handle;
    merged.ignore = opts_.ignore;
    if (const auto c = reconfigure_check(opts_, merged))
      throw std::invalid_argument{std::string{"circuit_breaker: "} + c->field + " " + c->rule};
    validate(merged);
    store_thresholds(merged);
    opts_.fail_max = merged.fail_max;
    opts_.break_duration = merged.break_duration;
    opts_.minimum_calls = merged.minimum_calls;
    opts_.failure_rate_threshold = merged.failure_rate_threshold;
    opts_.slow_call_duration = merged.slow_call_duration;
    opts_.slow_call_rate_threshold = merged.slow_call_rate_threshold;
    opts_.half_open_max_calls = merged.half_open_max_calls;
    opts_.success_threshold = merged.success_threshold;
    opts_.max_wait_in_half_open = merged.max_wait_in_half_open;
    opts_.break_duration_multiplier = merged.break_duration_multiplier;
    opts_.max_break_duration = merged.max_break_duration;
  }
  event_hub& hub() noexcept { return hub_; }
  bool has_exception_filters() const noexcept { return filters_; }
  bool tracks_slow_calls() const noexcept { return slow_enabled_; }

  // Admits or refuses one call. The closed state is decided here, inline;
  // every other state goes out of line. Refusals are counted and reported.
  [[gnu::always_inline]] cb_ticket acquire() noexcept {
    const std::uint64_t w = state_.load(std::memory_order_acquire);
    if (!cb_word::closed_ready(w)) [[unlikely]]
      return acquire_other(w);
    cb_ticket t{cb_ticket::closed};
    t.gen = cb_word::gen(w);
    if (timed_.load(std::memory_order_relaxed)) start_timing(t);
    return t;
  }

  // Records how an admitted call ended. A closed-state success, nearly
  // every call, is recorded inline with at most one atomic read-modify-write.
  [[gnu::always_inline]] void record(const cb_ticket& t, call_status status) noexcept {
    if (t.kind == cb_ticket::closed && status == call_status::success && !t.timed) [[likely]]
      record_closed_success(t.gen);
    else record_other(t, status);
  }

  rejection make_rejection(const cb_ticket& t) const noexcept {
    return rejection{.kind = &circuit_open_kind, .retry_after = t.retry_after, .source = opts_.name};
  }

  // The public state, applying a due open -> half_open or a stuck half_open -> open first.
  circuit_state state() noexcept {
    for (;;) {
      const std::uint64_t w = state_.load(std::memory_order_acquire);
      const auto p = cb_word::phase(w);
      if (cb_word::ready(w) && (p == cb_phase::open || p == cb_phase::half_open)) {
        const time_point now = opts_.clock.now();
        if (p == cb_phase::open && now >= time_point{duration{open_until_.load(std::memory_order_relaxed)}}) {
          transition(w, cb_phase::half_open, now);
          continue;
        }
        if (p == cb_phase::half_open && trials_exhausted(cb_word::gen(w)) && stuck_in_half_open(now)) {
          transition(w, cb_phase::open, reopen_time(now));
          continue;
        }
      }
      return public_state(p);
    }
  }

  circuit_breaker_stats stats() noexcept {
    circuit_breaker_stats s;
    s.state = state();
    const std::uint64_t w = state_.load(std::memory_order_acquire);
    s.isolated = cb_word::phase(w) == cb_phase::isolated;
    for (const auto& c : counts_) {
      s.successful += c.n[static_cast<std::size_t>(call_status::success)].load(std::memory_order_relaxed);
      s.failed += c.n[static_cast<std::size_t>(call_status::failure)].load(std::memory_order_relaxed);
      s.ignored += c.n[static_cast<std::size_t>(call_status::ignored)].load(std::memory_order_relaxed);
      s.rejected += c.n[static_cast<std::size_t>(call_status::rejected)].load(std::memory_order_relaxed);
      s.slow += c.n[breaker_call_counts::slow].load(std::memory_order_relaxed);
    }
    add_window_counts(s);
    for (std::size_t f = 0; f < 3; ++f)
      for (std::size_t t = 0; t < 3; ++t) s.transitions[f][t] = transitions_[f][t].load(std::memory_order_relaxed);
    const auto opens = opens_in_a_row_.load(std::memory_order_relaxed);
    s.break_duration = break_duration(s.state == circuit_state::closed ? opens + 1 : std::max<std::uint32_t>(opens, 1));
    if (!rate_mode_) {
      const auto c = consecutive_.load(std::memory_order_relaxed);
      if (cb_word::phase(w) == cb_phase::closed && cb_word::gen(c) == cb_word::gen(w))
        s.consecutive_failures = static_cast<int>(static_cast<std::uint32_t>(c));
      // The count the breaker decides on, as a share of the count that opens it.
      s.failure_rate = s.state == circuit_state::closed
                           ? static_cast<double>(s.consecutive_failures) /
                                 static_cast<double>(fail_max_.load(std::memory_order_relaxed))
                           : 1.0;
    } else {
      const auto [calls, failures, slow] = window_counts(cb_word::gen(w), opts_.clock.now());
      s.window_calls = calls;
      s.failure_rate = calls == 0 ? 0.0 : static_cast<double>(failures) / static_cast<double>(calls);
      s.slow_call_rate = calls == 0 ? 0.0 : static_cast<double>(slow) / static_cast<double>(calls);
    }
    return s;
  }

  // Forces the breaker open (reported as open) until reset().
  void isolate() noexcept { force(cb_phase::isolated); }
  // Closes the breaker and clears its window, consecutive count and break growth.
  void reset() noexcept { force(cb_phase::closed); }

  void add_observer(std::function<void(duration, call_status)> fn) {
    observers_.add(std::move(fn));
    timed_.store(true, std::memory_order_relaxed);
  }

  template <class T>
  call_status classify(const outcome<T>& r) const noexcept {
    if (r.has_value()) {
      if constexpr (!std::is_void_v<T>) {
        if (results_) [[unlikely]]
          return classify_result(*r);
      }
      return call_status::success;
    }
    if (r.has_exception()) return classify_exception(r.exception());
    return classify_rejection(r.rejection());
  }

  template <class T>
  call_status classify_value(const T& v) const noexcept {
    if (!results_) [[likely]]
      return call_status::success;
    return classify_result(v);
  }

  // Out of line: only a breaker with a results() predicate (or ignore) gets here.
  template <class T>
  [[gnu::noinline]] call_status classify_result(const T& v) const noexcept {
    try {
      const failure f{&v};  // a results() predicate on another type does not match
      if (opts_.ignore.matches(f)) return call_status::ignored;
      return opts_.handle.matches(f) ? call_status::failure : call_status::success;
    } catch (...) {
      return call_status::failure;
    }
  }

  call_status classify_exception(const std::exception_ptr& e) const noexcept {
    if (!filters_) return call_status::failure;
    try {
      const failure f{&e};
      if (opts_.ignore.matches(f)) return call_status::ignored;
      if (!opts_.handle.matches(f)) return call_status::success;
    } catch (...) {
      // A predicate that throws cannot tell us anything: count a failure.
    }
    return call_status::failure;
  }

  // Another policy's refusal says nothing about the dependency, except a
  // timeout's (or any kind that says so), and only when handle takes it.
  [[gnu::noinline]] call_status classify_rejection(const rejection& r) const noexcept {
    const bool dependency = r.kind->dependency_failure();
    try {
      const failure f{&r};
      if (opts_.ignore.matches(f)) return call_status::ignored;
      return dependency && opts_.handle.matches(f) ? call_status::failure : call_status::ignored;
    } catch (...) {
      return dependency ? call_status::failure : call_status::ignored;
    }
  }

 private:
  void start_timing(cb_ticket& t) const noexcept {
    t.timed = true;
    t.start = opts_.clock.now();
  }

  // acquire() in every state but closed-and-ready.
  [[gnu::noinline]] cb_ticket acquire_other(std::uint64_t w) noexcept {
    for (;; w = state_.load(std::memory_order_acquire)) {
      const std::uint32_t gen = cb_word::gen(w);
      switch (cb_word::phase(w)) {
        case cb_phase::closed: {
          cb_ticket t{cb_word::ready(w) ? cb_ticket::closed : cb_ticket::closed_untracked};
          t.gen = gen;
          if (timed_.load(std::memory_order_relaxed)) start_timing(t);
          return t;
        }
        case cb_phase::open: {
          if (!cb_word::ready(w))
            return reject(circuit_state::open, duration{break_duration_.load(std::memory_order_relaxed)});
          const time_point now = opts_.clock.now();
          const time_point until{duration{open_until_.load(std::memory_order_relaxed)}};
          if (now < until) return reject(circuit_state::open, saturating_sub(until, now));
          transition(w, cb_phase::half_open, now);
          continue;
        }
        case cb_phase::isolated:
          return reject(circuit_state::open, duration::zero());  // no estimate: it stays open until reset()
        case cb_phase::half_open: {
          // Trials are taken even while the transition that opened them is
          // still being announced: no caller is refused while a slot is free.
          if (take_trial(gen)) {
            cb_ticket t{cb_ticket::trial};
            t.gen = gen;
            if (timed_.load(std::memory_order_relaxed)) start_timing(t);
            return t;
          }
          // Every trial slot is taken. A slot frees when a trial answers,
          // which nobody can foresee; but if none answers, the period ends
          // max_wait_in_half_open after it began and a trial passes one break
          // later. A period still being announced began just now.
          const std::uint32_t opens = opens_in_a_row_.load(std::memory_order_relaxed);
          const duration at_latest = saturating_add(max_wait_in_half_open(), break_duration(opens + 1));
          if (!cb_word::ready(w)) return reject(circuit_state::half_open, at_latest);
          const time_point now = opts_.clock.now();
          if (stuck_in_half_open(now)) {
            transition(w, cb_phase::open, reopen_time(now));
            continue;
          }
          return reject(circuit_state::half_open, saturating_sub(saturating_add(half_open_since(), at_latest), now));
        }
      }
    }
  }

  // The inline part of record(): a success in the closed state, untimed.
  [[gnu::always_inline]] void record_closed_success(std::uint32_t gen) noexcept {
    switch (opts_.window) {
      case breaker_window::consecutive: {
        count(call_status::success, false);
        // Reads one shared word and writes nothing, unless failures were counted.
        const std::uint64_t c = consecutive_.load(std::memory_order_relaxed);
        if (cb_word::gen(c) == gen && static_cast<std::uint32_t>(c) != 0) [[unlikely]]
          record_consecutive(gen, false);
        return;
      }
      case breaker_window::count_based: {
        // Counted by its window position (see add_window_counts), so the
        // position is its only read-modify-write; and a success replacing a
        // success of this period changes no total, so it writes nothing else.
        const std::uint64_t pos = head_.fetch_add(1, std::memory_order_acq_rel);
        // A window full of this period's successes: the slot holds one too,
        // and one load of the totals (on the line just written) tells so.
        if (totals_.load(std::memory_order_relaxed) ==
            totals_word::pack(static_cast<std::uint16_t>(gen), window_size_16_, 0, 0))
          return;
        const window_slot s = slot_at(pos);
        const std::uint32_t mine = slot_code(gen, false, false);
        if (s.seen != mine) (void)fill_slot(gen, mine, s);
        return;
      }
      case breaker_window::time_based: record_time_success(gen); return;
    }
  }

  // The current bucket is most likely the one of the cached epoch: it is
  // read before the clock, so that its value is at hand when the
  // compare-and-swap needs it rather than loaded just ahead of it.
  [[gnu::noinline]] void record_time_success(std::uint32_t gen) noexcept {
    const bucket_hint hint{last_epoch_.load(std::memory_order_relaxed), ring_mask_, buckets_.get()};
    record_time(gen, call_status::success, false, opts_.clock.now(), hint);
  }

  // record() for a timed call, a failure, an ignored call, a trial or a
  // call admitted while a transition was being announced.
  [[gnu::noinline]] void record_other(const cb_ticket& t, call_status status) noexcept {
    time_point end{};
    bool slow = false;
    if (t.timed) {
      end = opts_.clock.now();
      const duration took = end - t.start;
      slow = slow_enabled_ && took > duration{slow_call_duration_.load(std::memory_order_relaxed)};
      if (!observers_.empty()) observers_.notify(took, status);
    }
    if (t.kind != cb_ticket::closed || status == call_status::ignored) {
      count(status, slow);
      if (t.kind == cb_ticket::trial) record_trial(t.gen, status, slow);
      return;
    }
    const bool failure = status == call_status::failure;
    switch (opts_.window) {
      case breaker_window::consecutive:
        if (failure) {
          count(status, slow);
          record_consecutive(t.gen, true);
        } else {
          record_closed_success(t.gen);
        }
        return;
      case breaker_window::count_based:
        if (!failure && !slow) {
          record_closed_success(t.gen);
          return;
        }
        if (failure) count(status, slow);
        else  // a slow success: the success itself is counted by its position
          counts_[breaker_stripe()].n[breaker_call_counts::slow].fetch_add(1, std::memory_order_relaxed);
        record_count(t.gen, failure, slow);
        return;
      case breaker_window::time_based: record_time(t.gen, status, slow, t.timed ? end : opts_.clock.now()); return;
    }
  }

  cb_ticket reject(circuit_state s, duration retry_after) noexcept {
    count(call_status::rejected, false);
    detail::emit(&hub_, [&] {
      event e{circuit_rejected_event, opts_.name};
      e.at(opts_.clock.now()).with("state", to_string(s)).with("retry_after", retry_after);
      return e;
    });
    cb_ticket t{cb_ticket::rejected};
    t.retry_after = retry_after;
    t.state = s;
    return t;
  }

  // Adds to `s` the calls the window counted instead of the stripes.
  // A count window's successes are its positions minus its failures; a
  // failure is counted before it takes its position, so this never reads
  // high. A time window's calls are in its buckets or, once a bucket was
  // reused or cleared, in folded_; folded_ is read first, and a bucket is
  // emptied before its calls are folded, so no call is read twice.
  void add_window_counts(circuit_breaker_stats& s) noexcept {
    if (opts_.window == breaker_window::count_based) {
      const std::uint64_t positions = head_.load(std::memory_order_acquire);
      const std::uint64_t failures = window_failures_.load(std::memory_order_acquire);
      s.successful += monotonic(seen_[0], positions >= failures ? positions - failures : 0);
    } else if (opts_.window == breaker_window::time_based) {
      std::array<std::uint64_t, 3> n{};
      for (std::size_t k = 0; k < 3; ++k) n[k] = folded_[k].load(std::memory_order_acquire);
      for (std::size_t i = 0; i <= ring_mask_; ++i) {
        const auto w = buckets_[i].load(std::memory_order_relaxed);
        n[0] += bucket_word::calls(w) - bucket_word::failures(w);
        n[1] += bucket_word::failures(w);
        n[2] += bucket_word::slow(w);
      }
      s.successful += monotonic(seen_[0], n[0]);
      s.failed += monotonic(seen_[1], n[1]);
      s.slow += monotonic(seen_[2], n[2]);
    }
  }

  void count(call_status s, bool slow) noexcept {
    auto& c = counts_[breaker_stripe()];
    c.n[static_cast<std::size_t>(s)].fetch_add(1, std::memory_order_relaxed);
    if (slow) c.n[breaker_call_counts::slow].fetch_add(1, std::memory_order_relaxed);
  }

  // Consecutive mode: [gen:32 | failures:32]; a word of an older generation reads as zero.
  [[gnu::noinline]] void record_consecutive(std::uint32_t gen, bool failure) noexcept {
    std::uint64_t c = consecutive_.load(std::memory_order_relaxed);
    if (!failure) {
      while (cb_word::gen(c) == gen && static_cast<std::uint32_t>(c) != 0) {
        if (consecutive_.compare_exchange_weak(c, std::uint64_t{gen} << 32, std::memory_order_relaxed)) return;
      }
      return;
    }
    std::uint64_t next;
    do {
      if (gen_newer(cb_word::gen(c), gen)) return;  // the breaker moved on while this call ran
      const std::uint32_t n = cb_word::gen(c) == gen ? static_cast<std::uint32_t>(c) : 0;
      next = (std::uint64_t{gen} << 32) | (n + 1);
    } while (!consecutive_.compare_exchange_weak(c, next, std::memory_order_relaxed));
    if (static_cast<std::uint32_t>(next) >= static_cast<std::uint32_t>(fail_max_.load(std::memory_order_relaxed)))
      transition(cb_word::pack(gen, cb_phase::closed, true), cb_phase::open, opts_.clock.now());
  }

  bool rate_exceeded(const window_totals& w) const noexcept {
    if (w.calls < minimum_calls_.load(std::memory_order_relaxed)) return false;
    const double n = static_cast<double>(w.calls);
    if (static_cast<double>(w.failures) >= failure_rate_threshold_.load(std::memory_order_relaxed) * n) return true;
    return slow_enabled_ &&
           static_cast<double>(w.slow) >= slow_call_rate_threshold_.load(std::memory_order_relaxed) * n;
  }

  void open_if_rate_exceeded(std::uint32_t gen, const window_totals& w) noexcept {
    if (rate_exceeded(w)) transition(cb_word::pack(gen, cb_phase::closed, true), cb_phase::open, opts_.clock.now());
  }

  // position % window_size, by Lemire's fastmod on the low 32 bits of the
  // position (the high half of low * n): exact, and much cheaper than a
  // division. At the 2^32 wrap one slot is reused out of turn, which a
  // window of recent calls does not notice.
  std::size_t slot_index(std::uint64_t position) const noexcept {
    const std::uint64_t low = fastmod_m_ * static_cast<std::uint32_t>(position), n = window_size_;
    return static_cast<std::size_t>(((low >> 32) * n + (((low & 0xffffffffu) * n) >> 32)) >> 32);
  }

  // Takes the next position of the count window. The read-modify-write
  // comes first: a locked instruction waits for every load before it, so a
  // slot lookup placed ahead of it would delay it, while after it the lookup
  // overlaps with whatever the thread does next.
  window_slot take_position() noexcept { return slot_at(head_.fetch_add(1, std::memory_order_acq_rel)); }

  window_slot slot_at(std::uint64_t position) const noexcept {
    const std::size_t i = slot_index(position);
    return {i, slots_[i].load(std::memory_order_relaxed)};
  }

  [[gnu::noinline]] void record_count(std::uint32_t gen, bool failure, bool slow) noexcept {
    if (failure)
      window_failures_.fetch_add(1, std::memory_order_release);  // before the position: see add_window_counts
    const std::uint32_t mine = slot_code(gen, failure, slow);
    const window_slot s = take_position();
    window_totals w;
    if (s.seen == mine) {
      // Replacing an equal record of this period changes no total.
      if (!failure && !slow) return;
      const auto t = totals_.load(std::memory_order_relaxed);
      if (totals_word::gen(t) != static_cast<std::uint16_t>(gen)) return;
      w = sanitize(t);
    } else if (const auto filled = fill_slot(gen, mine, s)) {
      w = *filled;
    } else {
      return;
    }
    if (failure || slow) open_if_rate_exceeded(gen, w);
  }

  // Writes `mine` into the slot and moves the totals from what it held to
  // what it holds; nothing when a newer closed period owns the window.
  [[gnu::noinline]] std::optional<window_totals> fill_slot(std::uint32_t gen, std::uint32_t mine,
                                                           window_slot s) noexcept {
    const auto g = static_cast<std::uint16_t>(gen);
    const std::uint32_t old = slots_[s.index].exchange(mine, std::memory_order_acq_rel);
    const bool old_counts = static_cast<std::uint16_t>(old >> 8) == g && (old & slot_recorded) != 0;
    const bool failure = (mine & slot_failure) != 0, slow = (mine & slot_slow) != 0;
    std::uint64_t t = totals_.load(std::memory_order_relaxed), next;
    do {
      const std::uint16_t tg = totals_word::gen(t);
      if (gen16_newer(tg, g)) return std::nullopt;  // a newer closed period owns the window now
      std::uint16_t c = 0, f = 0, sl = 0;
      if (tg == g) {
        c = totals_word::field(t, 1);
        f = totals_word::field(t, 2);
        sl = totals_word::field(t, 3);
      }
      if (old_counts) {
        c = static_cast<std::uint16_t>(c - 1);
        f = static_cast<std::uint16_t>(f - ((old & slot_failure) ? 1 : 0));
        sl = static_cast<std::uint16_t>(sl - ((old & slot_slow) ? 1 : 0));
      }
      c = static_cast<std::uint16_t>(c + 1);
      f = static_cast<std::uint16_t>(f + (failure ? 1 : 0));
      sl = static_cast<std::uint16_t>(sl + (slow ? 1 : 0));
      next = totals_word::pack(g, c, f, sl);
    } while (!totals_.compare_exchange_weak(t, next, std::memory_order_relaxed));
    return sanitize(next);
  }

  // A count caught between another thread's subtraction and its own addition
  // can read too high for a moment; such a reading is treated as empty.
  window_totals sanitize(std::uint64_t totals) const noexcept {
    const std::uint64_t c = totals_word::field(totals, 1), f = totals_word::field(totals, 2),
                        s = totals_word::field(totals, 3);
    if (c > window_size_ || f > c || s > c) return {};
    return {c, f, s};
  }

  // now / bucket width. The last answer is cached and checked with a
  // multiplication, so the division runs once per bucket, not once per call.
  std::uint64_t epoch_of(time_point now) const noexcept {
    const auto t = static_cast<std::uint64_t>(now.time_since_epoch().count());
    const auto width = static_cast<std::uint64_t>(bucket_width_.count());
    const std::uint64_t cached = last_epoch_.load(std::memory_order_relaxed);
    if (t - cached * width < width) return cached;  // unsigned: also false when t is before the cached bucket
    const std::uint64_t e = t / width;
    last_epoch_.store(e, std::memory_order_relaxed);
    return e;
  }

  // Time window: a closed-state call goes into the current bucket, which
  // also counts it for stats(), or into the stripes when the bucket cannot
  // take it. A failure or a slow call re-evaluates the rates.
  [[gnu::always_inline]] void record_time(std::uint32_t gen, call_status status, bool slow, time_point now,
                                          bucket_hint hint = {}) noexcept {
    const bool failure = status == call_status::failure;
    // A call that began in a closed period that is over must not land in the next one's window.
    if (state_.load(std::memory_order_relaxed) != cb_word::pack(gen, cb_phase::closed, true)) [[unlikely]] {
      count(status, slow);
      return;
    }
    if (!add_to_bucket(failure, slow, now, hint)) [[unlikely]]
      count(status, slow);
    if (failure || slow) [[unlikely]]
      evaluate_time_window(gen, now);
  }

  [[gnu::noinline]] void evaluate_time_window(std::uint32_t gen, time_point now) noexcept {
    open_if_rate_exceeded(gen, window_counts(gen, now));
  }

  // Adds one call to the current bucket; false when it is full (16383
  // calls): the window drops the sample, which keeps its rates. A bucket
  // still holding an older epoch starts afresh, its calls folded away.
  [[gnu::always_inline]] bool add_to_bucket(bool failure, bool slow, time_point now, bucket_hint hint) noexcept {
    const std::uint64_t e = epoch_of(now);
    auto& b = buckets_[e & ring_mask_];
    const std::uint64_t fresh = bucket_word::pack(e, 0, 0, 0);
    // Added as one number: failures and slow calls never exceed calls, so no field overflows into the next.
    const std::uint64_t one = bucket_word::pack(0, 1, failure ? 1 : 0, slow ? 1 : 0);
    // A stale hint only makes the first compare-and-swap fail.
    std::uint64_t w = e == hint.epoch ? hint.word : b.load(std::memory_order_relaxed), base;
    do {
      base = bucket_word::stamp(w) == bucket_word::stamp(fresh) ? w : fresh;
      if (bucket_word::calls(base) == bucket_word::mask14) return false;
    } while (!b.compare_exchange_weak(w, base + one, std::memory_order_relaxed));
    if (base != w && bucket_word::calls(w) != 0) [[unlikely]]
      fold(w);
    return true;
  }

  // Moves the calls of a bucket that was just reused or cleared to folded_,
  // where stats() still finds them (after the bucket changed: the release
  // pairs with add_window_counts' acquire).
  [[gnu::noinline]] void fold(std::uint64_t w) noexcept {
    folded_[0].fetch_add(bucket_word::calls(w) - bucket_word::failures(w), std::memory_order_release);
    folded_[1].fetch_add(bucket_word::failures(w), std::memory_order_release);
    folded_[2].fetch_add(bucket_word::slow(w), std::memory_order_release);
  }

  window_totals window_counts(std::uint32_t gen, time_point now) const noexcept {
    if (opts_.window == breaker_window::count_based) {
      const auto t = totals_.load(std::memory_order_relaxed);
      if (totals_word::gen(t) != static_cast<std::uint16_t>(gen)) return {};
      return sanitize(t);
    }
    window_totals r;
    if (opts_.window != breaker_window::time_based) return r;
    const std::uint64_t e = epoch_of(now);
    for (std::uint64_t k = 0; k < opts_.window_buckets && k <= e; ++k) {
      const std::uint64_t ek = e - k;
      const auto w = buckets_[ek & ring_mask_].load(std::memory_order_relaxed);
      if (bucket_word::stamp(w) != (ek & bucket_word::mask22)) continue;
      r.calls += bucket_word::calls(w);
      r.failures += bucket_word::failures(w);
      r.slow += bucket_word::slow(w);
    }
    return r;
  }

  // Half-open trials: [gen:32 | in_flight:16 | successes:16]; an older generation reads as zero.
  bool take_trial(std::uint32_t gen) noexcept {
    std::uint64_t h = trials_.load(std::memory_order_relaxed), next;
    do {
      if (gen_newer(cb_word::gen(h), gen)) return false;
      const bool same = cb_word::gen(h) == gen;
      const std::uint64_t in_flight = same ? (h >> 16) & 0xffff : 0;
      const std::uint64_t ok = same ? h & 0xffff : 0;
      if (in_flight >= static_cast<std::uint64_t>(half_open_max_calls_.load(std::memory_order_relaxed))) return false;
      next = (std::uint64_t{gen} << 32) | ((in_flight + 1) << 16) | ok;
    } while (!trials_.compare_exchange_weak(h, next, std::memory_order_acq_rel));
    return true;
  }

  bool trials_exhausted(std::uint32_t gen) const noexcept {
    const auto h = trials_.load(std::memory_order_relaxed);
    return cb_word::gen(h) == gen &&
           ((h >> 16) & 0xffff) >= static_cast<std::uint64_t>(half_open_max_calls_.load(std::memory_order_relaxed));
  }

  time_point half_open_since() const noexcept {
    return time_point{duration{half_open_since_.load(std::memory_order_relaxed)}};
  }

  bool stuck_in_half_open(time_point now) const noexcept {
    return saturating_sub(now, half_open_since()) >= max_wait_in_half_open();
  }

  // When a half-open period that ends in a reopening ended: now, or the
  // moment it got stuck if nobody looked since. The break starts there, so
  // a refused caller's retry_after holds however late the breaker notices.
  time_point reopen_time(time_point now) const noexcept {
    return std::min(now, saturating_add(half_open_since(), max_wait_in_half_open()));
  }

  void record_trial(std::uint32_t gen, call_status status, bool slow) noexcept {
    // A trial that ends before its half-open period was announced waits for
    // the announcement, so that its own transition comes after it. The wait
    // lasts as long as the state-change listeners take.
    // A listener that calls through the breaker must not wait for itself.
    std::uint64_t expected = cb_word::pack(gen, cb_phase::half_open, true);
    const std::uint64_t pending = cb_word::pack(gen, cb_phase::half_open, false);
    if (announcing == this) {
      if (state_.load(std::memory_order_acquire) == pending) expected = pending;
    } else {
      while (state_.load(std::memory_order_acquire) == pending) std::this_thread::yield();
    }
    if (status == call_status::failure || (slow && status == call_status::success)) {
      transition(expected, cb_phase::open, reopen_time(opts_.clock.now()));
      return;
    }
    std::uint64_t h = trials_.load(std::memory_order_relaxed), next;
    std::uint64_t ok;
    do {
      if (cb_word::gen(h) != gen) return;  // a stale trial: its half-open period is over
      const std::uint64_t in_flight = (h >> 16) & 0xffff;
      ok = (h & 0xffff) + (status == call_status::success ? 1 : 0);
      next = (std::uint64_t{gen} << 32) | ((in_flight == 0 ? 0 : in_flight - 1) << 16) | ok;
    } while (!trials_.compare_exchange_weak(h, next, std::memory_order_acq_rel));
    if (status == call_status::success &&
        ok >= static_cast<std::uint64_t>(success_threshold_.load(std::memory_order_relaxed)))
      transition(expected, cb_phase::closed, time_point{});
  }

  duration break_duration(std::uint32_t opens) const noexcept {
    const duration base{break_duration_.load(std::memory_order_relaxed)};
    const double multiplier = break_duration_multiplier_.load(std::memory_order_relaxed);
    if (opens <= 1 || multiplier == 1.0) return base;
    const double grown = static_cast<double>(base.count()) * std::pow(multiplier, static_cast<double>(opens - 1));
    const duration max{max_break_duration_.load(std::memory_order_relaxed)};
    // max >= base is checked only together with a multiplier > 1; a reload racing this read may pair the old with the
    // new.
    if (max < base) return base;
    return grown >= static_cast<double>(max.count()) ? max : duration{static_cast<duration::rep>(grown)};
  }

  // Performs expected -> `to` if the state is still `expected`; false when
  // another thread moved it first.
  bool transition(std::uint64_t expected, cb_phase to, time_point now) noexcept {
    const std::uint32_t gen = cb_word::gen(expected) + 1;
    const std::uint64_t pending = cb_word::pack(gen, to, false);
    if (!state_.compare_exchange_strong(expected, pending, std::memory_order_acq_rel, std::memory_order_relaxed))
      return false;
    prepare(to, now);
    announce_in_order(gen, cb_word::phase(expected), to);
    std::uint64_t p = pending;
    // A reset() or isolate() may have overtaken us; then the state is theirs.
    state_.compare_exchange_strong(p, cb_word::pack(gen, to, true), std::memory_order_release,
                                   std::memory_order_relaxed);
    return true;
  }

  void prepare(cb_phase to, time_point now) noexcept {
    switch (to) {
      case cb_phase::open: {
        const auto opens = opens_in_a_row_.fetch_add(1, std::memory_order_relaxed) + 1;
        open_until_.store(saturating_add(now, break_duration(opens)).time_since_epoch().count(),
                          std::memory_order_relaxed);
        break;
      }
      case cb_phase::half_open:
        half_open_since_.store(now.time_since_epoch().count(), std::memory_order_relaxed);
        break;
      case cb_phase::closed:
        opens_in_a_row_.store(0, std::memory_order_relaxed);
        if (opts_.window == breaker_window::time_based)
          for (std::size_t i = 0; i <= ring_mask_; ++i)
            if (const auto w = buckets_[i].exchange(0, std::memory_order_relaxed); bucket_word::calls(w) != 0) fold(w);
        break;
      case cb_phase::isolated: break;
    }
  }

  void announce(cb_phase from_phase, cb_phase to_phase) noexcept {
    const auto from = public_state(from_phase), to = public_state(to_phase);
    if (from == to) return;  // open <-> isolated is not a change anyone sees
    transitions_[static_cast<std::size_t>(from)][static_cast<std::size_t>(to)].fetch_add(1, std::memory_order_relaxed);
    const breaker_state* outer = std::exchange(announcing, this);
    detail::emit(&hub_, [&] {
      event e{circuit_state_changed_event, opts_.name};
      e.at(opts_.clock.now()).with("from", to_string(from)).with("to", to_string(to));
      if (to == circuit_state::open) e.with_severity(log_level::error);
      return e;
    });
    announcing = outer;
  }

  // Announces the change to generation `gen` once every earlier one has
  // been: a reset() or isolate() can overtake a transition between its CAS
  // and its announcement, and listeners (event-fed metrics) must hear the
  // changes in the order they happened, each `from` the previous `to`. Only
  // the transition path waits, yielding, and only on that race. A listener
  // that changes the state itself is announced at once, nested in its event.
  void announce_in_order(std::uint32_t gen, cb_phase from, cb_phase to) noexcept {
    if (announcing != this)
      while (gen_newer(gen - 1, announced_.load(std::memory_order_acquire))) std::this_thread::yield();
    announce(from, to);
    // Never backwards: a nested announcement may have finished a later generation first.
    auto done = announced_.load(std::memory_order_relaxed);
    while (gen_newer(gen, done) &&
           !announced_.compare_exchange_weak(done, gen, std::memory_order_release, std::memory_order_relaxed)) {
    }
  }

  void force(cb_phase to) noexcept {
    std::uint64_t w = state_.load(std::memory_order_acquire);
    for (;;) {
      if (to == cb_phase::isolated && cb_word::phase(w) == cb_phase::isolated) return;
      const std::uint32_t gen = cb_word::gen(w) + 1;
      if (state_.compare_exchange_weak(w, cb_word::pack(gen, to, false), std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
        prepare(to, time_point{});
        announce_in_order(gen, cb_word::phase(w), to);
        std::uint64_t p = cb_word::pack(gen, to, false);
        state_.compare_exchange_strong(p, cb_word::pack(gen, to, true), std::memory_order_release,
                                       std::memory_order_relaxed);
        return;
      }
    }
  }

  duration max_wait_in_half_open() const noexcept {
    return duration{max_wait_in_half_open_.load(std::memory_order_relaxed)};
  }

  // The thresholds, read where a decision needs one (never on a closed-state
  // success), so reconfigure() can change them under traffic: each decision
  // reads the old value or the new one.
  void store_thresholds(const circuit_breaker_options& o) noexcept {
    constexpr auto r = std::memory_order_relaxed;
    fail_max_.store(o.fail_max, r);
    break_duration_.store(o.break_duration.count(), r);
    minimum_calls_.store(o.minimum_calls, r);
    failure_rate_threshold_.store(o.failure_rate_threshold, r);
    slow_call_duration_.store(o.slow_call_duration.count(), r);
    slow_call_rate_threshold_.store(o.slow_call_rate_threshold, r);
    half_open_max_calls_.store(o.half_open_max_calls, r);
    success_threshold_.store(o.success_threshold, r);
    max_wait_in_half_open_.store(o.max_wait_in_half_open.count(), r);
    break_duration_multiplier_.store(o.break_duration_multiplier, r);
    max_break_duration_.store(o.max_break_duration.count(), r);
  }

  // Its thresholds are written only by reconfigure(), under options_mutex_,
  // and read only by options(); every other field never changes.
  circuit_breaker_options opts_;
  mutable std::mutex options_mutex_;
  std::atomic<int> fail_max_{0};
  std::atomic<duration::rep> break_duration_{0};
  std::atomic<std::size_t> minimum_calls_{0};
  std::atomic<double> failure_rate_threshold_{0};
  std::atomic<duration::rep> slow_call_duration_{0};
  std::atomic<double> slow_call_rate_threshold_{0};
  std::atomic<int> half_open_max_calls_{0};
  std::atomic<int> success_threshold_{0};
  std::atomic<duration::rep> max_wait_in_half_open_{0};
  std::atomic<double> break_duration_multiplier_{1};
  std::atomic<duration::rep> max_break_duration_{0};
  bool rate_mode_ = false;
  bool slow_enabled_ = false;
  bool filters_ = false;  // handle or ignore asks about exceptions
  bool results_ = false;  // handle or ignore has a results() predicate
  duration bucket_width_{1};
  std::size_t ring_mask_ = 0;
  mutable std::atomic<std::uint64_t> last_epoch_{0};
  std::uint64_t fastmod_m_ = 0;
  std::uint64_t window_size_ = 0;
  std::uint16_t window_size_16_ = 0;
  std::unique_ptr<std::atomic<std::uint32_t>[]> slots_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;

  // Read on every call; written only by transitions.
  alignas(64) std::atomic<std::uint64_t> state_{cb_word::pack(0, cb_phase::closed, true)};
  std::atomic<duration::rep> open_until_{0};
  std::atomic<duration::rep> half_open_since_{0};
  std::atomic<std::uint32_t> opens_in_a_row_{0};
  observer_list<duration, call_status> observers_;
  std::atomic<bool> timed_{false};  // calls are timed: slow calls are tracked or an observer is attached
  // Read on every success; written on failures.
  alignas(64) std::atomic<std::uint64_t> consecutive_{0};
  std::atomic<std::uint64_t> trials_{0};
  alignas(64) std::atomic<std::uint64_t> head_{0};
  std::atomic<std::uint64_t> totals_{0};
  std::atomic<std::uint64_t> window_failures_{0};
  std::array<std::atomic<std::uint64_t>, 3> seen_{};  // the highest window-derived counts stats() reported
  std::array<std::atomic<std::uint64_t>, 3>
      folded_{};  // time window: successes, failures, slow calls of buckets reused or cleared
  std::array<breaker_call_counts, breaker_stripes> counts_{};
  std::array<std::array<std::atomic<std::uint64_t>, 3>, 3> transitions_{};
  std::atomic<std::uint32_t> announced_{0};  // the generation whose change was last announced
  event_hub hub_;
};

}  // namespace detail

/// A circuit breaker: a shared handle (copies share one state), usable as a
/// policy in resilient<>, through call()/try_call(), or as a scope (enter()).
class circuit_breaker {
 public:
  /// The C++ form of `with breaker:`. Records, when destroyed, a failure if
  /// an exception is unwinding through it and a success otherwise, unless
  /// success()/failure() said first. The breaker must outlive the scope.
  class scope {
   public:
    /// The refusal type (named so, as rejection() is the accessor).
    using rejection_type = resilience::rejection;

    scope(scope&& o) noexcept
        : st_{std::exchange(o.st_, nullptr)}, ticket_{o.ticket_}, uncaught_{o.uncaught_}, rejection_{o.rejection_} {}
    scope& operator=(scope&&) = delete;
    ~scope() {
      if (st_ != nullptr)
        st_->record(ticket_, std::uncaught_exceptions() > uncaught_ ? call_status::failure : call_status::success);
    }

    /// True when the breaker admitted the call (try_enter may return a refused scope).
    explicit operator bool() const noexcept { return ticket_.kind != detail::cb_ticket::rejected; }
    /// True when this call is a half-open trial.
    bool is_trial() const noexcept { return ticket_.kind == detail::cb_ticket::trial; }
    /// The refusal (precondition: !*this); retry_after is the time until a trial.
    const rejection_type& rejection() const noexcept { return rejection_; }

    /// Records a success now.
    void success() noexcept { finish(call_status::success); }
    /// Records a failure now.
    void failure() noexcept { finish(call_status::failure); }
    /// Records `e` as the breaker's options classify it (failure, success or ignored).
    void failure(const std::exception_ptr& e) noexcept {
      if (st_ != nullptr) finish(st_->classify_exception(e));
    }
    /// Records nothing for this call (it counts as ignored).
    void ignore() noexcept { finish(call_status::ignored); }

   private:
    friend class circuit_breaker;
    scope(detail::breaker_state* st, const detail::cb_ticket& t) noexcept
        : st_{t.kind == detail::cb_ticket::rejected ? nullptr : st}, ticket_{t}, uncaught_{std::uncaught_exceptions()} {
      if (t.kind == detail::cb_ticket::rejected) rejection_ = st->make_rejection(t);
    }
    void finish(call_status s) noexcept {
      if (st_ != nullptr) std::exchange(st_, nullptr)->record(ticket_, s);
    }

    detail::breaker_state* st_;
    detail::cb_ticket ticket_;
    int uncaught_;
    rejection_type rejection_{};
  };

  /// A breaker with the given options; throws std::invalid_argument naming a bad field.
  explicit circuit_breaker(circuit_breaker_options options = {})
      : st_{std::make_shared<detail::breaker_state>(std::move(options))} {}

  /// The breaker's name.
  const std::string& name() const noexcept { return st_->name(); }
  /// Its configuration as it is now (a copy: reconfigure() may change the thresholds).
  circuit_breaker_options options() const { return st_->options(); }
  /// The clock its state runs on (a pipeline's clock must be the same).
  const clock_ref& clock() const noexcept { return st_->clock(); }
  /// Changes the thresholds in place, under traffic, keeping the state, the
  /// window, the counts and the break growth: fail_max, break_duration,
  /// minimum_calls, the rate thresholds, slow_call_duration (while it stays
  /// > 0), half_open_max_calls, success_threshold, max_wait_in_half_open,
  /// break_duration_multiplier and max_break_duration. The name, the clock
  /// and the handle/ignore failures of `options` are ignored (the breaker keeps its
  /// own). Each decision taken while it runs uses the old value or the new
  /// one; an open breaker's current break keeps its end. Throws
  /// std::invalid_argument naming the field for a bad value, or for a change
  /// of window, window_size, window_duration, window_buckets or of whether
  /// slow calls are tracked (they shape the breaker's storage).
  void reconfigure(const circuit_breaker_options& options) const { st_->reconfigure(options); }
  /// True when it times every call for slow-call tracking (a count or time
  /// window with slow_call_duration set); other breakers never read their clock
  /// on a closed-state call unless a call observer is attached.
  bool tracks_slow_calls() const noexcept { return st_->tracks_slow_calls(); }
  /// The current state (an open breaker whose break is over reports half_open).
  circuit_state state() const noexcept { return st_->state(); }
  /// A snapshot of state and counters.
  circuit_breaker_stats stats() const noexcept { return st_->stats(); }
  /// This breaker's event hub (circuit_state_changed, circuit_rejected).
  event_hub& events() const noexcept { return st_->hub(); }

  /// Calls fn(from, to) once per transition, on the thread that performs it,
  /// in the order the state changed (each `from` is the previous `to`, even
  /// when reset() or isolate() races a transition); returns the subscription
  /// to pass to events().unsubscribe(). A listener that needs the breaker
  /// should capture it by reference: a copy stored in the breaker's own hub
  /// would keep it alive forever.
  event_hub::subscription on_state_change(std::function<void(circuit_state from, circuit_state to)> fn) const {
    return st_->hub().subscribe([fn = std::move(fn)](const event& e) {
      if (e.is(circuit_state_changed_event))
        fn(circuit_state_of(e.get<std::string_view>("from")), circuit_state_of(e.get<std::string_view>("to")));
    });
  }

  /// Calls fn(duration, status) after every admitted call (for a latency
  /// histogram). While one is attached, the breaker times every call on its
  /// clock. Observers stay attached as long as the breaker lives.
  void on_call_recorded(std::function<void(duration, call_status)> fn) const { st_->add_observer(std::move(fn)); }

  /// Forces the breaker open until reset().
  void isolate() const noexcept { st_->isolate(); }
  /// Closes the breaker and clears its window, failure count and break growth.
  void reset() const noexcept { st_->reset(); }

  /// Calls f(args...) through the breaker: returns its result, rethrows its
  /// exception unchanged, or throws circuit_open_error.
  template <class F, class... Args>
  std::invoke_result_t<F&, Args&&...> call(F&& f, Args&&... args) const {
    using R = std::invoke_result_t<F&, Args&&...>;
    auto* st = st_.get();
    const auto t = st->acquire();
    if (t.kind == detail::cb_ticket::rejected) throw_rejection(st->make_rejection(t));
    try {
      if constexpr (std::is_void_v<R>) {
        std::invoke(f, std::forward<Args>(args)...);
        st->record(t, call_status::success);
      } else {
        R r = std::invoke(f, std::forward<Args>(args)...);
        st->record(t, st->classify_value(r));
        return r;
      }
    } catch (...) {
      st->record(t,
                 st->has_exception_filters() ? st->classify_exception(std::current_exception()) : call_status::failure);
      throw;
    }
  }

  /// Calls f(args...) through the breaker; never throws.
  template <class F, class... Args>
  outcome<std::remove_cvref_t<std::invoke_result_t<F&, Args&&...>>> try_call(F&& f, Args&&... args) const noexcept {
    using R = std::remove_cvref_t<std::invoke_result_t<F&, Args&&...>>;
    return run<R>([&]() noexcept -> outcome<R> {
      try {
        if constexpr (std::is_void_v<R>) {
          std::invoke(f, std::forward<Args>(args)...);
          return outcome<void>{};
        } else {
          return outcome<R>{std::in_place, std::invoke(f, std::forward<Args>(args)...)};
        }
      } catch (...) {
        return outcome<R>{std::current_exception()};
      }
    });
  }

  /// Enters a scope; throws circuit_open_error while the breaker refuses calls.
  [[nodiscard]] scope enter() const {
    const auto t = st_->acquire();
    if (t.kind == detail::cb_ticket::rejected) throw_rejection(st_->make_rejection(t));
    return scope{st_.get(), t};
  }
  /// Enters a scope without throwing; check it with operator bool.
  [[nodiscard]] scope try_enter() const noexcept { return scope{st_.get(), st_->acquire()}; }

  /// The policy step: rejects with circuit_open_kind, or runs next and records its outcome.
  /// Never waits or blocks: a coroutine's co_call runs it on the awaiting thread (coro.hpp).
  static constexpr bool never_waits = true;

  template <class Next>
  auto execute(call_context& ctx, Next&& next) const {
    using O = std::invoke_result_t<Next&, call_context&>;
    return run<typename O::value_type>([&] { return next(ctx); });
  }

  /// True when both handles share one breaker.
  friend bool operator==(const circuit_breaker& a, const circuit_breaker& b) noexcept { return a.st_ == b.st_; }

 private:
  template <class T, class Body>
  outcome<T> run(Body&& body) const {
    auto* st = st_.get();
    const auto t = st->acquire();
    if (t.kind == detail::cb_ticket::rejected) return outcome<T>{st->make_rejection(t)};
    outcome<T> r = body();
    st->record(t, st->classify(r));
    return r;
  }

  std::shared_ptr<detail::breaker_state> st_;
};

/// Named breakers shared across the process (presets and metrics use it).
class circuit_breaker_registry {
 public:
  /// The breaker called `name`, created with `options` (its name set to
  /// `name`) on first use; later calls return the same breaker and ignore
  /// `options`.
  circuit_breaker get_or_create(std::string_view name, circuit_breaker_options options = {}) {
    std::lock_guard lock{mutex_};
    if (auto it = breakers_.find(name); it != breakers_.end()) return it->second;
    options.name = std::string{name};
    circuit_breaker cb{std::move(options)};
    breakers_.emplace(std::string{name}, cb);
    return cb;
  }

  /// The breaker called `name`, if there is one.
  std::optional<circuit_breaker> find(std::string_view name) const {
    std::lock_guard lock{mutex_};
    if (auto it = breakers_.find(name); it != breakers_.end()) return it->second;
    return std::nullopt;
  }

  /// Every registered breaker, ordered by name.
  std::vector<circuit_breaker> all() const {
    std::lock_guard lock{mutex_};
    std::vector<circuit_breaker> v;
    v.reserve(breakers_.size());
    for (const auto& [name, cb] : breakers_) v.push_back(cb);
    return v;
  }

  /// Forgets the breaker called `name` (handles to it stay valid); false when absent.
  bool remove(std::string_view name) {
    std::lock_guard lock{mutex_};
    if (auto it = breakers_.find(name); it != breakers_.end()) {
      breakers_.erase(it);
      return true;
    }
    return false;
  }

  /// How many breakers are registered.
  std::size_t size() const {
    std::lock_guard lock{mutex_};
    return breakers_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, circuit_breaker, std::less<>> breakers_;
};

/// The process-wide breaker registry.
inline circuit_breaker_registry& global_circuit_breakers() {
  static circuit_breaker_registry registry;
  return registry;
}

namespace detail {

// A watched breaker's series; `durations` is null when not recorded.
inline void collect_breaker(metric_snapshot& s, const circuit_breaker& b, const duration_histogram* durations) {
  using enum metric_type;
  const std::string& name = b.name();
  const auto st = b.stats();
  s.cover("circuit_breaker", name);
  s.add("circuit_breaker_state", gauge, {}, {{"name", name}}, static_cast<double>(static_cast<int>(st.state)));
  const std::pair<call_status, std::uint64_t> calls[] = {{call_status::success, st.successful},
                                                         {call_status::failure, st.failed},
                                                         {call_status::rejected, st.rejected},
                                                         {call_status::ignored, st.ignored}};
  for (const auto& [status, n] : calls)
    s.add("circuit_breaker_calls_total", counter, {}, {{"name", name}, {"status", to_string(status)}},
          static_cast<double>(n));
  s.add("circuit_breaker_slow_calls_total", counter, {}, {{"name", name}}, static_cast<double>(st.slow));
  for (int from = 0; from < 3; ++from)
    for (int to = 0; to < 3; ++to) {
      const auto n = st.transitions[static_cast<std::size_t>(from)][static_cast<std::size_t>(to)];
      if (n == 0) continue;  // appears with its first transition, then only grows
      s.add("circuit_breaker_state_transitions_total", counter, {},
            {{"name", name},
             {"from", to_string(static_cast<circuit_state>(from))},
             {"to", to_string(static_cast<circuit_state>(to))}},
            static_cast<double>(n));
    }
  s.add("circuit_breaker_failure_rate", gauge, {}, {{"name", name}}, st.failure_rate);
  if (durations != nullptr) durations->collect(s, "circuit_breaker_call_duration_seconds", {}, {{"name", name}});
}

// The histogram a watched breaker feeds, or null (see call_durations).
inline std::shared_ptr<duration_histogram> breaker_durations(const circuit_breaker& b, call_durations durations,
                                                             const std::vector<double>& buckets) {
  if (durations == call_durations::never || (durations == call_durations::when_timed && !b.tracks_slow_calls()))
    return nullptr;
  auto h = std::make_shared<duration_histogram>(buckets);
  // The observer keeps the histogram alive: observers stay as long as the breaker.
  b.on_call_recorded([h](duration took, call_status) { h->observe(took); });
  return h;
}

}  // namespace detail

/// Its series without a duration histogram (for a collector of your own).
inline void collect_metrics(const circuit_breaker& b, metric_snapshot& s) { detail::collect_breaker(s, b, nullptr); }

/// metrics_registry::watch(breaker, durations): state, calls by status,
/// transitions, failure rate, and (see call_durations) feeds
/// circuit_breaker_call_duration_seconds through on_call_recorded. Watching
/// the same breaker again does nothing; another breaker with the same name
/// throws std::invalid_argument naming it.
inline void watch_metrics(const circuit_breaker& b, metric_watch& w,
                          call_durations durations = call_durations::when_timed) {
  // The hub lives as long as the breaker's state: its address is the breaker's identity.
  if (!w.claim("circuit breaker", b.name(), &b.events())) return;
  auto keep = std::make_shared<const circuit_breaker>(b);
  auto h = detail::breaker_durations(b, durations, w.duration_buckets());
  w.collect([keep, h](metric_snapshot& s) { detail::collect_breaker(s, *keep, h.get()); });
  w.rank(0);  // breakers first, those watched one by one before those of registries
  w.count_events(keep->events());
  w.keep(keep);
}

/// metrics_registry::watch(registry, durations): every breaker of the
/// registry at each scrape, including breakers created later (their
/// durations are recorded from the first scrape that sees them). A breaker
/// whose name another watched breaker holds is left out. The registry must
/// outlive the metrics registry (circuit_breakers() does).
inline void watch_metrics(const circuit_breaker_registry& r, metric_watch& w,
                          call_durations durations = call_durations::when_timed) {
  if (!w.claim("circuit breaker registry", std::to_string(reinterpret_cast<std::uintptr_t>(&r)), &r)) return;
  struct adopted {
    std::mutex mutex;
    std::map<std::string, std::pair<circuit_breaker, std::shared_ptr<duration_histogram>>, std::less<>> breakers;
  };
  auto seen = std::make_shared<adopted>();
  w.collect([&r, durations, seen, claim = w.claimer(), buckets = w.duration_buckets()](metric_snapshot& s) {
    std::lock_guard lock{seen->mutex};
    for (const auto& b : r.all()) {
      // The common case at every scrape, a breaker seen before: found by its plain name.
      if (const auto it = seen->breakers.find(b.name()); it != seen->breakers.end() && it->second.first == b) continue;
      if (!claim("circuit breaker", b.name(), &b.events(), true)) continue;  // watched on its own, or a namesake
      seen->breakers.insert_or_assign(b.name(), std::pair{b, detail::breaker_durations(b, durations, buckets)});
    }
    for (const auto& [name, entry] : seen->breakers) detail::collect_breaker(s, entry.first, entry.second.get());
  });
  w.rank(1);
}

}  // namespace v1
}  // namespace resilience
