// outcome<T&> must not compile: an outcome owns its value.
#include <resilience/outcome.hpp>

int main() {
#ifdef RESILIENCE_CONTROL
  resilience::outcome<int> o{1};
#else
  resilience::outcome<int&> o{std::make_exception_ptr(1)};
#endif
  return o.has_value() ? 0 : 1;
}
