// A type that is not a policy (no execute) is refused by the policy concept.
#include <resilience/resilient.hpp>

struct not_a_policy {
#ifdef RESILIENCE_CONTROL
  template <class Next>
  auto execute(resilience::call_context& ctx, Next&& next) const {
    return next(ctx);
  }
#else
  template <class Next>
  auto run(resilience::call_context& ctx, Next&& next) const {  // misnamed
    return next(ctx);
  }
#endif
};

int main() {
  resilience::resilient f{[] { return 1; }, not_a_policy{}};
  return f() == 1 ? 0 : 1;
}
