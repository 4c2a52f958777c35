// A wrapper's operator() is const (it is safe to share between threads), so
// a callable that needs to mutate itself is refused at compile time.
#include <resilience/resilient.hpp>

struct log_policy {
  template <class Next>
  auto execute(resilience::call_context& ctx, Next&& next) const {
    return next(ctx);
  }
};

int main() {
  int n = 0;
#ifdef RESILIENCE_CONTROL
  resilience::resilient f{[&n] { return ++n; }, log_policy{}};
#else
  resilience::resilient f{[n]() mutable { return ++n; }, log_policy{}};
#endif
  return f() == 1 ? 0 : 1;
}
