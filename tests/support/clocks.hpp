// Clock sources for tests, each virtual time (a manual_clock) with one twist:
//   forwarding_clock      forwards everything to its manual_clock (the base of the others)
//   counting_clock        counts how often it is read
//   throwing_sleep_clock  sleeps throw, as a user's clock_source may
//   no_timers_clock       timers cannot be set
#pragma once

#include <resilience/clock.hpp>

#include <atomic>
#include <functional>
#include <stdexcept>
#include <stop_token>
#include <system_error>
#include <utility>

namespace support {

using resilience::clock_source;
using resilience::manual_clock;
using resilience::time_point;
using resilience::timer_id;

/// A clock_source that forwards every call to its manual_clock, `time`.
struct forwarding_clock : clock_source {
  manual_clock time;
  time_point now() const noexcept override { return time.now(); }
  bool sleep_until(time_point t, std::stop_token stop) const override { return time.sleep_until(t, std::move(stop)); }
  timer_id call_at(time_point t, std::function<void()> fn) const override { return time.call_at(t, std::move(fn)); }
  bool cancel(timer_id id) const noexcept override { return time.cancel(id); }
};

/// A clock that counts how often it is read.
struct counting_clock final : forwarding_clock {
  mutable std::atomic<int> reads{0};
  time_point now() const noexcept override {
    reads.fetch_add(1, std::memory_order_relaxed);
    return time.now();
  }
};

/// Virtual time whose sleeps throw, as a user's clock_source may.
struct throwing_sleep_clock final : forwarding_clock {
  bool sleep_until(time_point, std::stop_token) const override {
    throw std::system_error{std::make_error_code(std::errc::interrupted)};
  }
};

/// Virtual time whose timers cannot be set.
struct no_timers_clock final : forwarding_clock {
  timer_id call_at(time_point, std::function<void()>) const override { throw std::runtime_error{"no timers"}; }
  bool cancel(timer_id) const noexcept override { return false; }
};

}  // namespace support
