// What a call or a constructor said, as text a CHECK compares:
//   failure_text(outcome)        the what() of the failure an outcome holds
//   invalid_argument_of(make)    the what() of the std::invalid_argument make() throws
#pragma once

#include <exception>
#include <stdexcept>
#include <string>

namespace support {

/// The message of the failure `o` holds (an exception, or a rejection as its
/// exception type), or "no failure".
inline std::string failure_text(const auto& o) {
  try {
    o.throw_if_failed();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no failure";
}

/// The message of the std::invalid_argument `make()` throws, or "no error"
/// (bad configuration is refused at construction, naming the field).
template <class F>
std::string invalid_argument_of(F&& make) {
  try {
    make();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace support
