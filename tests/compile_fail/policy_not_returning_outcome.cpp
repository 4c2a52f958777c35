// A policy whose execute does not return an outcome<T> is rejected with a
// clear message.
#include <resilience/resilient.hpp>

struct bad_policy {
  template <class Next>
  auto execute(resilience::call_context& ctx, Next&& next) const {
#ifdef RESILIENCE_CONTROL
    return next(ctx);
#else
    return next(ctx).value_or(0);  // an int, not an outcome
#endif
  }
};

int main() {
  resilience::resilient f{[] { return 1; }, bad_policy{}};
  return f() == 1 ? 0 : 1;
}
