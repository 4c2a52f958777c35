// fuzz_json_log.cpp: libFuzzer target. Feeds events with arbitrary string
// fields to the JSON-lines logger and checks each line with a strict JSON
// validator written here, independently of logging.hpp (RFC 8259: one
// object per line, valid UTF-8, only the standard escapes, paired
// surrogates, no raw control characters). A field that was valid UTF-8 must
// read back unchanged. A failed check traps.
#include <resilience/logging.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "../support/events.hpp"
#include "../support/fuzz.hpp"
#include "../support/utf8.hpp"

namespace {

using namespace resilience;
using namespace support;

void put_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// A strict RFC 8259 parser that keeps the top-level object's string members.
class json_checker {
 public:
  explicit json_checker(std::string_view s) : s_{s} {}

  std::map<std::string, std::string> top_object() {
    std::map<std::string, std::string> strings;
    ws();
    CHECK_OR_TRAP(peek() == '{');
    ++i_;
    ws();
    if (peek() == '}') {
      ++i_;
    } else {
      for (;;) {
        ws();
        const std::string key = string();
        CHECK_OR_TRAP(strings.count(key) == 0 && keys_.insert(key).second);  // no member twice
        ws();
        CHECK_OR_TRAP(peek() == ':');
        ++i_;
        ws();
        if (peek() == '"') strings[key] = string();
        else value(0);
        ws();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        CHECK_OR_TRAP(peek() == '}');
        ++i_;
        break;
      }
    }
    ws();
    CHECK_OR_TRAP(i_ == s_.size());  // one object per line, nothing after it
    return strings;
  }

 private:
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\r' || s_[i_] == '\n')) ++i_;
  }
  void literal(std::string_view word) {
    CHECK_OR_TRAP(s_.substr(i_, word.size()) == word);
    i_ += word.size();
  }
  unsigned hex4() {
    CHECK_OR_TRAP(i_ + 4 <= s_.size());
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<unsigned>(c - 'A' + 10);
      else CHECK_OR_TRAP(false);
    }
    return v;
  }
  std::string string() {
    CHECK_OR_TRAP(peek() == '"');
    ++i_;
    std::string out;
    for (;;) {
      CHECK_OR_TRAP(i_ < s_.size());
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return out;
      }
      CHECK_OR_TRAP(c >= 0x20);  // control characters must be escaped
      if (c == '\\') {
        ++i_;
        CHECK_OR_TRAP(i_ < s_.size());
        const char e = s_[i_++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            std::uint32_t cp = hex4();
            if (cp >= 0xD800 && cp <= 0xDBFF) {  // a high surrogate must be followed by a low one
              literal("\\u");
              const unsigned lo = hex4();
              CHECK_OR_TRAP(lo >= 0xDC00 && lo <= 0xDFFF);
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else {
              CHECK_OR_TRAP(cp < 0xDC00 || cp > 0xDFFF);
            }
            put_utf8(out, cp);
            break;
          }
          default: CHECK_OR_TRAP(false);
        }
        continue;
      }
      std::uint32_t cp = 0;
      const std::size_t n = utf8_char(s_, i_, cp);
      CHECK_OR_TRAP(n != 0);
      out.append(s_.substr(i_, n));
      i_ += n;
    }
  }
  void number() {
    if (peek() == '-') ++i_;
    if (peek() == '0') {
      ++i_;
    } else {
      CHECK_OR_TRAP(peek() >= '1' && peek() <= '9');
      while (peek() >= '0' && peek() <= '9') ++i_;
    }
    if (peek() == '.') {
      ++i_;
      CHECK_OR_TRAP(peek() >= '0' && peek() <= '9');
      while (peek() >= '0' && peek() <= '9') ++i_;
    }
    if (peek() == 'e' || peek() == 'E') {
      ++i_;
      if (peek() == '+' || peek() == '-') ++i_;
      CHECK_OR_TRAP(peek() >= '0' && peek() <= '9');
      while (peek() >= '0' && peek() <= '9') ++i_;
    }
  }
  void value(int depth) {
    CHECK_OR_TRAP(depth < 64);
    switch (peek()) {
      case '"': (void)string(); return;
      case 't': literal("true"); return;
      case 'f': literal("false"); return;
      case 'n': literal("null"); return;
      case '{':
      case '[': {
        const char close = peek() == '{' ? '}' : ']';
        const bool object = close == '}';
        ++i_;
        ws();
        if (peek() == close) {
          ++i_;
          return;
        }
        for (;;) {
          ws();
          if (object) {
            (void)string();
            ws();
            CHECK_OR_TRAP(peek() == ':');
            ++i_;
            ws();
          }
          value(depth + 1);
          ws();
          if (peek() == ',') {
            ++i_;
            continue;
          }
          CHECK_OR_TRAP(peek() == close);
          ++i_;
          return;
        }
      }
      default: number(); return;
    }
  }

  std::string_view s_;
  std::size_t i_ = 0;
  std::set<std::string> keys_;
};

// A field that was valid UTF-8 reads back exactly.
void check_field(const std::map<std::string, std::string>& fields, const char* key, const std::string& given) {
  const auto it = fields.find(key);
  CHECK_OR_TRAP(it != fields.end());
  if (strict_utf8(given)) CHECK_OR_TRAP(it->second == given);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  reader in{data, size};
  std::vector<std::string> lines;
  const json_logger log{[&](std::string_view line) { lines.emplace_back(line); },
                        json_logger_options{.min_level = log_level::debug}};
  int steps = 0;
  while (!in.empty() && ++steps < 32) {
    const std::uint8_t op = in.byte();
    const std::string a = in.str();
    const std::string b = in.str();
    const std::string c = in.str();
    const auto state = static_cast<circuit_state>(op % 3);
    const std::chrono::nanoseconds d{static_cast<std::int64_t>(in.byte()) * 1'000'003 * (op & 1 ? -1 : 1)};
    lines.clear();
    switch (op % 10) {
      case 0: log(support::retry_attempted(a, static_cast<int>(op), d, b)); break;
      case 1: log(support::retries_exhausted(a, -static_cast<int>(op), b)); break;
      case 2: log(support::timeout_occurred(a, d)); break;
      case 3: log(support::fallback_activated(a, b, c)); break;
      case 4: log(support::rate_limit_violated(a, b, d)); break;
      case 5: log(support::circuit_state_changed(a, state, static_cast<circuit_state>((op / 3) % 3))); break;
      case 6: log(support::circuit_rejected(a, state, d)); break;
      case 7: log(support::bulkhead_rejected(a, op)); break;
      case 8: log(support::tier_changed(tier::full, tier::maintenance, a)); break;
      case 9: log(support::service_health_changed(a, (op & 16) != 0, d, b)); break;
    }
    CHECK_OR_TRAP(lines.size() == 1);
    const std::string& line = lines.front();
    CHECK_OR_TRAP(line.find('\n') == std::string::npos);
    CHECK_OR_TRAP(strict_utf8(line));
    const auto fields = json_checker{line}.top_object();
    check_field(fields, "timestamp", fields.count("timestamp") ? fields.at("timestamp") : std::string{});
    check_field(fields, "level", fields.count("level") ? fields.at("level") : std::string{});
    switch (op % 10) {
      case 0:
        check_field(fields, "operation", a);
        check_field(fields, "failure", b);
        break;
      case 1:
        check_field(fields, "operation", a);
        check_field(fields, "failure", b);
        break;
      case 2: check_field(fields, "operation", a); break;
      case 3:
        check_field(fields, "operation", a);
        check_field(fields, "strategy", b);
        check_field(fields, "reason", c);
        break;
      case 4:
        check_field(fields, "key", a);
        check_field(fields, "tenant", b);
        break;
      case 5:
      case 6:
      case 7: check_field(fields, "name", a); break;
      case 8: check_field(fields, "cause", a); break;
      case 9:
        check_field(fields, "service", a);
        check_field(fields, "error", b);
        break;
    }
  }
  return 0;
}
