// An async continuation takes the step's outcome<T>: a callback that wants
// another type is refused (policy.hpp's async_callback is typed).
#include <string>

#include <resilience/policy.hpp>

int main() {
#ifdef RESILIENCE_CONTROL
  resilience::async_callback<int> cb{[](resilience::outcome<int>) {}};
#else
  resilience::async_callback<int> cb{[](std::string) {}};
#endif
  cb(resilience::outcome<int>{1});
  return 0;
}
