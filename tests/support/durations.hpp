// seconds_list({1, 2, 4}): a list of whole seconds as resilience::duration,
// to compare with the waits a policy or a backoff produced.
#pragma once

#include <resilience/clock.hpp>

#include <chrono>
#include <initializer_list>
#include <vector>

namespace support {

/// The given whole seconds as a vector of resilience::duration.
inline std::vector<resilience::duration> seconds_list(std::initializer_list<long> secs) {
  std::vector<resilience::duration> out;
  for (long s : secs) out.push_back(std::chrono::seconds{s});
  return out;
}

}  // namespace support
