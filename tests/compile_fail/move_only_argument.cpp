// A callable taking a move-only argument by value cannot be retried (the
// call's arguments are kept and passed again, as lvalues, on every attempt):
// one static_assert says so. Taking it by reference compiles.
#include <memory>

#include <resilience/resilient.hpp>
#include <resilience/retry.hpp>

#ifdef RESILIENCE_CONTROL
int consume(const std::unique_ptr<int>& p) { return *p; }
#else
int consume(std::unique_ptr<int> p) { return *p; }
#endif

int main() {
  resilience::resilient r{consume, resilience::retry{}};
  return r(std::make_unique<int>(1)) == 1 ? 0 : 1;
}
