#include <resilience/backoff.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/durations.hpp"
#include "support/messages.hpp"

using namespace resilience;
using namespace support;
using namespace std::chrono_literals;

namespace {

std::vector<duration> first_delays(const backoff& b, int count) {
  std::vector<duration> out;
  duration previous = duration::zero();
  for (int n = 1; n <= count; ++n) {
    previous = b.delay(n, previous);
    out.push_back(previous);
  }
  return out;
}

}  // namespace

TEST_CASE("every strategy gives the seed's exact sequence without jitter", "[backoff]") {
  SECTION("exponential: 1, 2, 4, 8...") {
    CHECK(first_delays(backoff{}, 8) == seconds_list({1, 2, 4, 8, 16, 32, 64, 128}));
  }
  SECTION("exponential with multiplier 3") {
    CHECK(first_delays(backoff{{.multiplier = 3.0}}, 5) == seconds_list({1, 3, 9, 27, 81}));
  }
  SECTION("exponential with multiplier 1.5 from 100 ms") {
    CHECK(first_delays(backoff{{.base_delay = 100ms, .multiplier = 1.5}}, 4) ==
          std::vector<duration>{100ms, 150ms, 225ms, 337500us});
  }
  SECTION("linear: 1, 2, 3...") {
    CHECK(first_delays(backoff{{.strategy = backoff_strategy::linear}}, 6) == seconds_list({1, 2, 3, 4, 5, 6}));
  }
  SECTION("constant: 1, 1, 1...") {
    CHECK(first_delays(backoff{{.strategy = backoff_strategy::constant}}, 5) == seconds_list({1, 1, 1, 1, 1}));
  }
  SECTION("fibonacci: 1, 1, 2, 3, 5...") {
    CHECK(first_delays(backoff{{.strategy = backoff_strategy::fibonacci}}, 10) ==
          seconds_list({1, 1, 2, 3, 5, 8, 13, 21, 34, 55}));
  }
  SECTION("fibonacci scales with the base delay") {
    CHECK(first_delays(backoff{{.strategy = backoff_strategy::fibonacci, .base_delay = 100ms}}, 5) ==
          std::vector<duration>{100ms, 100ms, 200ms, 300ms, 500ms});
  }
  SECTION("a zero base delay retries at once") {
    for (auto s : {backoff_strategy::exponential, backoff_strategy::linear, backoff_strategy::constant,
                   backoff_strategy::fibonacci, backoff_strategy::decorrelated_jitter})
      CHECK(first_delays(backoff{{.strategy = s, .base_delay = 0s}}, 4) == std::vector<duration>(4, 0s));
  }
}

TEST_CASE("max_delay caps every strategy", "[backoff]") {
  CHECK(first_delays(backoff{{.max_delay = 10s}}, 6) == seconds_list({1, 2, 4, 8, 10, 10}));
  CHECK(first_delays(backoff{{.strategy = backoff_strategy::linear, .max_delay = 3s}}, 5) ==
        seconds_list({1, 2, 3, 3, 3}));
  CHECK(first_delays(backoff{{.strategy = backoff_strategy::fibonacci, .max_delay = 4s}}, 6) ==
        seconds_list({1, 1, 2, 3, 4, 4}));
  CHECK(first_delays(backoff{{.base_delay = 2s, .max_delay = 2s}}, 3) == seconds_list({2, 2, 2}));
}

TEST_CASE("huge retry numbers saturate instead of overflowing", "[backoff]") {
  for (auto s : {backoff_strategy::exponential, backoff_strategy::linear, backoff_strategy::fibonacci}) {
    const backoff capped{{.strategy = s, .max_delay = 1h}};
    CHECK(capped.delay(INT_MAX) == 1h);
    CHECK(capped.delay(1'000'000) == 1h);
    const backoff uncapped{{.strategy = s, .base_delay = 1s, .max_delay = duration::max()}};
    CHECK(uncapped.delay(10'000) == (s == backoff_strategy::linear ? duration{10'000s} : duration::max()));
    CHECK(uncapped.delay(INT_MAX) == (s == backoff_strategy::linear ? std::chrono::seconds{INT_MAX} : duration::max()));
  }
  const backoff one_ns{{.strategy = backoff_strategy::fibonacci, .base_delay = 1ns, .max_delay = duration::max()}};
  CHECK(one_ns.delay(92) == duration{7540113804746346429});  // fib(92), the last one below 2^63
  CHECK(one_ns.delay(93) == duration::max());
  CHECK(one_ns.delay(INT_MAX) == duration::max());
  const backoff exp_ns{{.base_delay = 1ns, .max_delay = duration::max()}};
  CHECK(exp_ns.delay(63) == duration{std::int64_t{1} << 62});
  CHECK(exp_ns.delay(64) == duration::max());
  // Retry numbers below 1 are treated as the first retry.
  CHECK(backoff{}.delay(0) == 1s);
  CHECK(backoff{}.delay(-5) == 1s);
}

TEST_CASE("decorrelated jitter near duration::max() saturates instead of overflowing", "[backoff]") {
  const backoff b{{.strategy = backoff_strategy::decorrelated_jitter,
                   .base_delay = 1h,
                   .max_delay = duration::max(),
                   .random = seeded_random(3)}};
  for (int i = 0; i < 1000; ++i) {
    // random(base, 3 x previous) with 3 x previous saturated: a draw rounding to the top used to wrap below zero.
    const duration d = b.delay(i + 1, duration::max() - duration{i});
    REQUIRE(d >= 1h);
  }
  const backoff huge_base{{.strategy = backoff_strategy::decorrelated_jitter,
                           .base_delay = max_duration,
                           .max_delay = duration::max(),
                           .random = seeded_random(5)}};
  for (int i = 0; i < 1000; ++i) REQUIRE(huge_base.delay(INT_MAX, duration::max()) >= max_duration);
}

TEST_CASE("a base_delay past 100 years is rejected naming the field", "[backoff]") {
  CHECK_THROWS_WITH((backoff{{.base_delay = duration::max(), .max_delay = duration::max()}}),
                    "backoff: base_delay must be within 100 years (resilience::max_duration)");
}

TEST_CASE("full and equal jitter stay in bounds over 10,000 seeded draws", "[backoff]") {
  const auto draws = 10'000;
  for (const duration base : {duration{1s}, duration{250ms}}) {
    const backoff full{{.base_delay = base, .jitter = jitter_mode::full, .random = seeded_random(7)}};
    const backoff equal{{.base_delay = base, .jitter = jitter_mode::equal, .random = seeded_random(7)}};
    for (int n = 1; n <= 4; ++n) {
      const duration nominal = base * (1 << (n - 1));
      REQUIRE(full.nominal(n) == nominal);
      duration lo_full = duration::max(), hi_full = duration::zero(), lo_eq = duration::max(), hi_eq = duration::zero();
      double sum_full = 0;
      for (int i = 0; i < draws; ++i) {
        const duration f = full.delay(n);
        const duration e = equal.delay(n);
        REQUIRE(f >= 0s);
        REQUIRE(f < nominal);
        REQUIRE(e >= nominal / 2);
        REQUIRE(e < nominal);
        lo_full = std::min(lo_full, f);
        hi_full = std::max(hi_full, f);
        lo_eq = std::min(lo_eq, e);
        hi_eq = std::max(hi_eq, e);
        sum_full += std::chrono::duration<double>(f).count();
      }
      // The draws spread over the whole range: within 1% of each end, mean near the middle.
      CHECK(lo_full < nominal / 100);
      CHECK(hi_full > nominal * 99 / 100);
      CHECK(lo_eq < nominal / 2 + nominal / 100);
      CHECK(hi_eq > nominal * 99 / 100);
      const double mean = sum_full / draws, middle = std::chrono::duration<double>(nominal).count() / 2;
      CHECK(std::abs(mean - middle) < middle * 0.03);
    }
  }
}

TEST_CASE("jitter respects max_delay", "[backoff]") {
  const backoff full{{.max_delay = 3s, .jitter = jitter_mode::full, .random = seeded_random(1)}};
  const backoff equal{{.max_delay = 3s, .jitter = jitter_mode::equal, .random = seeded_random(1)}};
  for (int i = 0; i < 10'000; ++i) {
    REQUIRE(full.delay(10) < 3s);
    const duration e = equal.delay(10);
    REQUIRE(e >= 1500ms);
    REQUIRE(e < 3s);
  }
}

TEST_CASE("decorrelated jitter draws from [base, 3 x previous], capped", "[backoff]") {
  const backoff b{{.strategy = backoff_strategy::decorrelated_jitter,
                   .base_delay = 100ms,
                   .max_delay = 20s,
                   .random = seeded_random(2024)}};
  duration previous = duration::zero();
  duration highest = duration::zero();
  int at_cap = 0;
  for (int n = 1; n <= 10'000; ++n) {
    const duration d = b.delay(n, previous);
    REQUIRE(d >= 100ms);
    REQUIRE(d <= std::min<duration>(20s, std::max<duration>(previous, 100ms) * 3));
    highest = std::max(highest, d);
    if (d == 20s) ++at_cap;
    previous = d;
  }
  CHECK(highest == 20s);  // it does reach the cap...
  CHECK(at_cap > 100);    // ...and comes back down from it
  CHECK(at_cap < 9'000);
  // The first draw (no previous delay) lies in [base, 3 base).
  for (int i = 0; i < 1000; ++i) {
    const duration d = b.delay(1);
    REQUIRE(d >= 100ms);
    REQUIRE(d < 300ms);
  }
}

TEST_CASE("a seeded random source is reproducible; copies share one sequence", "[backoff]") {
  auto a = seeded_random(42), b = seeded_random(42), c = seeded_random(43);
  CHECK(a.seeded());
  CHECK_FALSE(random_source{}.seeded());
  std::vector<std::uint64_t> va, vb, vc;
  for (int i = 0; i < 100; ++i) {
    va.push_back(a.next());
    vb.push_back(b.next());
    vc.push_back(c.next());
  }
  CHECK(va == vb);
  CHECK(va != vc);
  CHECK(std::set<std::uint64_t>(va.begin(), va.end()).size() == 100);

  auto d = seeded_random(42);
  auto copy = d;
  CHECK(d.next() == va[0]);
  CHECK(copy.next() == va[1]);  // one sequence, not two

  // splitmix64 of seed 0: the published first outputs.
  auto zero = seeded_random(0);
  CHECK(zero.next() == 0xe220a8397b1dcdafULL);
  CHECK(zero.next() == 0x6e789e6aa1b965f4ULL);
}

TEST_CASE("uniform draws lie in [0, 1)", "[backoff]") {
  const random_source per_thread{};
  const auto seeded = seeded_random(5);
  for (int i = 0; i < 10'000; ++i) {
    const double u = per_thread.uniform(), v = seeded.uniform();
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    REQUIRE(v >= 0.0);
    REQUIRE(v < 1.0);
  }
}

TEST_CASE("a seeded source shared by threads hands out each draw exactly once", "[backoff]") {
  const auto shared = seeded_random(99);
  constexpr int threads = 4, per_thread = 2'000;
  std::vector<std::vector<std::uint64_t>> got(threads);
  {
    std::vector<std::jthread> workers;
    for (int t = 0; t < threads; ++t)
      workers.emplace_back([&, t] {
        for (int i = 0; i < per_thread; ++i) got[t].push_back(shared.next());
      });
  }
  std::multiset<std::uint64_t> all;
  for (auto& g : got) all.insert(g.begin(), g.end());
  const auto reference = seeded_random(99);
  std::multiset<std::uint64_t> expected;
  for (int i = 0; i < threads * per_thread; ++i) expected.insert(reference.next());
  CHECK(all == expected);
}

TEST_CASE("the per-thread default generators differ between threads", "[backoff]") {
  const random_source r{};
  std::uint64_t here = r.next(), there = 0;
  std::jthread{[&] { there = r.next(); }}.join();
  CHECK(here != there);  // two 64-bit draws from independently seeded generators
}

TEST_CASE("bad backoff options throw std::invalid_argument naming the field", "[backoff]") {
  auto message = [](backoff_options o) { return invalid_argument_of([&] { backoff b{std::move(o)}; }); };
  CHECK(message({.base_delay = -1ns}) == "backoff: base_delay must be >= 0");
  CHECK(message({.max_delay = -1s}) == "backoff: max_delay must be >= 0");
  CHECK(message({.base_delay = 2s, .max_delay = 1s}) == "backoff: max_delay must be >= base_delay");
  CHECK(message({.multiplier = 0.5}) == "backoff: multiplier must be finite and >= 1");
  CHECK(message({.multiplier = std::numeric_limits<double>::quiet_NaN()}) ==
        "backoff: multiplier must be finite and >= 1");
  CHECK(message({.multiplier = std::numeric_limits<double>::infinity()}) ==
        "backoff: multiplier must be finite and >= 1");
  CHECK(message({.strategy = static_cast<backoff_strategy>(17)}) == "backoff: strategy is not a backoff_strategy");
  CHECK(message({.jitter = static_cast<jitter_mode>(9)}) == "backoff: jitter is not a jitter_mode");
  CHECK(message({.multiplier = 1.0}) == "no error");
  CHECK(message({.base_delay = 0s, .max_delay = 0s}) == "no error");
}
