// resilience/detail/breaker_observers.hpp: the observers a circuit breaker
// tells of each timed call (degradation's health feed uses them). Users name
// circuit_breaker.hpp, never this header.
#pragma once

#include <atomic>
#include <functional>
#include <utility>

namespace resilience {
inline namespace v1 {
namespace detail {

// Functions told of every timed call (duration, how it ended): a list
// that only grows, pushed to without a lock while calls run, walked by each
// timed call, freed with its owner.
template <class... Args>
class observer_list {
 public:
  observer_list() = default;
  observer_list(const observer_list&) = delete;
  observer_list& operator=(const observer_list&) = delete;
  ~observer_list() {
    for (auto* n = head_.load(std::memory_order_acquire); n != nullptr;) {
      auto* next = n->next;
      delete n;
      n = next;
    }
  }

  void add(std::function<void(Args...)> fn) {
    auto* node = new observer_node{std::move(fn), head_.load(std::memory_order_relaxed)};
    while (!head_.compare_exchange_weak(node->next, node, std::memory_order_release, std::memory_order_relaxed)) {
    }
  }

  bool empty() const noexcept { return head_.load(std::memory_order_acquire) == nullptr; }

  [[gnu::noinline]] void notify(Args... args) const noexcept {
    for (auto* n = head_.load(std::memory_order_acquire); n != nullptr; n = n->next) {
      try {
        n->fn(args...);
      } catch (...) {
        // An observer's failure must not break the call it observes.
      }
    }
  }

 private:
  struct observer_node {
    std::function<void(Args...)> fn;
    observer_node* next;
  };
  std::atomic<observer_node*> head_{nullptr};
};

}  // namespace detail
}  // namespace v1
}  // namespace resilience
