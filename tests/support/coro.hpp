// Coroutine types for tests (the library imposes none):
//   spawned  a fire-and-forget coroutine: starts at once, frees itself at the end
#pragma once

#include <coroutine>
#include <exception>

namespace support {

/// A coroutine that starts at once and destroys its frame when it ends;
/// what escapes its body terminates (tests catch inside).
struct spawned {
  struct promise_type {
    spawned get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

}  // namespace support
