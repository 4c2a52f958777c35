// Counts every heap allocation in the process, so a benchmark can prove a
// hot path allocates nothing: report allocs_per_call(state) as a counter.
#pragma once

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>

namespace bench {

/// Allocations since the program started (all threads).
std::uint64_t allocations() noexcept;

/// Measures allocations over a benchmark loop: construct before the loop,
/// call report(state) after it.
class alloc_scope {
 public:
  alloc_scope() noexcept : start_{allocations()} {}
  void report(benchmark::State& state) const {
    const auto n = static_cast<double>(allocations() - start_);
    state.counters["allocs_per_call"] = benchmark::Counter(n / static_cast<double>(state.iterations()));
  }

 private:
  std::uint64_t start_;
};

}  // namespace bench
