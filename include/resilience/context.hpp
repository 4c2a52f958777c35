// resilience/context.hpp: what a policy knows about the call it is running.
//
// resilient<> builds one call_context per call and hands it down the
// pipeline; a policy reads it, and may change it for the policies inside it
// (a timeout sets the deadline and stop_token, retry counts attempts).
//
//   struct log_attempts {
//     template <class Next>
//     auto execute(resilience::call_context& ctx, Next&& next) const {
//       std::printf("%.*s attempt %d\n", int(ctx.operation.size()), ctx.operation.data(), ctx.attempt);
//       return next(ctx);
//     }
//   };
#pragma once

#include <stop_token>
#include <string_view>

#include "clock.hpp"

namespace resilience {
inline namespace v1 {

class executor_ref;  // executor.hpp

/// What a caller may say about one call (see resilient::call_with).
struct call_options {
  std::string_view operation{};       ///< a name for logs and events ("factor_lookup")
  std::string_view tenant{};          ///< the tenant key a per-tenant rate limit uses
  std::stop_token stop{};             ///< cancels the call (sleeps end, stop-aware callables see it)
  time_point deadline = no_deadline;  ///< an absolute deadline for the whole call
};

/// The per-call state policies share. The views it holds must outlive the call.
class call_context {
 public:
  /// A context on clock `clk` (which must outlive the context).
  explicit call_context(const clock_ref& clk, const call_options& options = {}) noexcept
      : operation{options.operation},
        tenant{options.tenant},
        stop{options.stop},
        deadline{options.deadline},
        clock_{&clk} {}

  /// The call's clock: the only source of time a policy may use.
  const clock_ref& clock() const noexcept { return *clock_; }
  /// clock().now().
  time_point now() const noexcept { return clock_->now(); }
  /// Time left until the deadline (duration::max() without one; zero or less once passed).
  duration remaining() const noexcept {
    return deadline == no_deadline ? duration::max() : saturating_sub(deadline, now());
  }
  /// Tightens the deadline to `d` if `d` is earlier; never loosens it.
  void narrow_deadline(time_point d) noexcept {
    if (d < deadline) deadline = d;
  }

  std::string_view operation;  ///< the call's operation name, if the caller gave one
  std::string_view tenant;     ///< the call's tenant key, if the caller gave one
  std::stop_token stop;        ///< stop requests for this call (a timeout replaces it with its own)
  time_point deadline;         ///< no_deadline, or when the call must be over
  int attempt = 1;             ///< 1 for the first try, 2 for the first retry...
  /// Where detached timeouts and async steps run (set by with_executor());
  /// null means default_executor(). Must outlive the call, like the clock.
  const executor_ref* executor = nullptr;

 private:
  const clock_ref* clock_;
};

}  // namespace v1
}  // namespace resilience
