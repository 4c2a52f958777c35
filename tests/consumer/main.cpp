// Uses the library the way a downstream project would.
#include <resilience/resilience.hpp>

#include <cstdio>
#include <stdexcept>

int main() {
  int calls = 0;
  resilience::manual_clock clock{resilience::manual_clock::auto_advance};
  resilience::resilient flaky{[&calls](int x) {
                                if (++calls < 3) throw std::runtime_error{"flaky"};
                                return x * 2;
                              },
                              resilience::retry{{.max_retries = 3}}};
  flaky.with_clock(clock);
  const int v = flaky(21);
  std::printf("consumer: %d after %d calls\n", v, calls);
  return v == 42 && calls == 3 ? 0 : 1;
}
