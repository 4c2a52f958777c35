// resilience/detail/unique_function.hpp: a move-only std::function with
// inline storage, for executor tasks (executor.hpp) and async continuations
// (policy.hpp). Users name `task` and `async_callback`, never this header.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace resilience {
inline namespace v1 {

namespace detail {

// A move-only std::function: tasks own promises and other move-only state.
// Callables of up to six pointers that move without throwing live inside
// it (a posted task, a continuation holding a promise), so most tasks cost
// no allocation.
template <class Sig>
class unique_function;

template <class R, class... A>
class unique_function<R(A...)> {
 public:
  unique_function() noexcept = default;
  template <class F>
  requires(!std::is_same_v<std::decay_t<F>, unique_function> && std::is_invocable_r_v<R, std::decay_t<F>&, A...>)
      unique_function(F&& f) {
    using D = std::decay_t<F>;
    if constexpr (stored_inline<D>) {
      ::new (static_cast<void*>(storage_)) D(std::forward<F>(f));
    } else {
      ::new (static_cast<void*>(storage_)) D*(new D(std::forward<F>(f)));
    }
    ops_ = &ops_for<D>;
  }
  unique_function(unique_function&& other) noexcept : ops_{std::exchange(other.ops_, nullptr)} {
    if (ops_) ops_->move(storage_, other.storage_);
  }
  unique_function& operator=(unique_function&& other) noexcept {
    if (this != &other) {
      reset();
      ops_ = std::exchange(other.ops_, nullptr);
      if (ops_) ops_->move(storage_, other.storage_);
    }
    return *this;
  }
  ~unique_function() { reset(); }

  explicit operator bool() const noexcept { return ops_ != nullptr; }
  R operator()(A... a) { return ops_->call(storage_, std::forward<A>(a)...); }

 private:
  static constexpr std::size_t capacity = 6 * sizeof(void*);
  template <class D>
  static constexpr bool stored_inline =
      sizeof(D) <= capacity && alignof(D) <= alignof(std::max_align_t) && std::is_nothrow_move_constructible_v<D>;

  struct ops {
    R (*call)(void* self, A&&... a);
    void (*move)(void* to, void* from) noexcept;  // move-constructs at `to`, destroys `from`
    void (*destroy)(void* self) noexcept;
  };
  template <class D>
  static D& target(void* p) noexcept {
    if constexpr (stored_inline<D>) return *std::launder(static_cast<D*>(p));
    else return **std::launder(static_cast<D**>(p));
  }
  template <class D>
  static constexpr ops ops_for{
      [](void* self, A&&... a) -> R { return std::invoke(target<D>(self), std::forward<A>(a)...); },
      [](void* to, void* from) noexcept {
        if constexpr (stored_inline<D>) {
          ::new (to) D(std::move(target<D>(from)));
          target<D>(from).~D();
        } else {
          ::new (to) D*(*std::launder(static_cast<D**>(from)));
        }
      },
      [](void* self) noexcept {
        if constexpr (stored_inline<D>) target<D>(self).~D();
        else delete &target<D>(self);
      }};

  void reset() noexcept {
    if (const ops* o = std::exchange(ops_, nullptr)) o->destroy(storage_);
  }

  alignas(std::max_align_t) std::byte storage_[capacity];
  const ops* ops_ = nullptr;
};

}  // namespace detail

}  // namespace v1
}  // namespace resilience
