// Executors for tests:
//   counting_executor  runs each task at once, counting them
//   refusing_executor  refuses every task (its post throws)
//   refusing_nth       posts to a manual_executor, but refuses the n-th task
#pragma once

#include <resilience/executor.hpp>

#include <memory>
#include <stdexcept>
#include <utility>

namespace support {

/// Runs each task on the posting thread, counting them.
struct counting_executor {
  std::shared_ptr<int> posted = std::make_shared<int>(0);
  void post(resilience::task t) {
    ++*posted;
    t();
  }
};

/// An executor that refuses every task.
struct refusing_executor {
  void post(resilience::task) { throw std::runtime_error{"executor full"}; }
};

/// Posts to a manual_executor, but refuses the n-th task.
struct refusing_nth {
  resilience::manual_executor* ex;
  int refuse;
  std::shared_ptr<int> posts = std::make_shared<int>(0);
  void post(resilience::task t) {
    if (++*posts == refuse) throw std::runtime_error{"pool closed"};
    ex->post(std::move(t));
  }
};

}  // namespace support
