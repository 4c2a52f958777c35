#include <resilience/cache.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

using namespace resilience;
using namespace std::chrono_literals;

TEST_CASE("bad cache settings are rejected when the cache is built", "[cache]") {
  using cache = result_cache<int, int>;
  CHECK_THROWS_WITH(cache{{.ttl = 0s}}, "result_cache: ttl must be > 0");
  CHECK_THROWS_WITH(cache({.ttl = 10s, .max_age = 5s}), "result_cache: max_age must be >= ttl");
  CHECK_THROWS_WITH(cache{{.max_entries = 0}}, "result_cache: max_entries must be > 0");
}

TEST_CASE("get serves fresh entries; get_stale serves entries up to max_age with their age", "[cache]") {
  manual_clock clk;
  result_cache<std::string, double> c{{.ttl = 1min, .max_age = 1h, .clock = clk}};
  c.put("electricity", 0.233);
  clk.advance(30s);
  auto fresh = c.get("electricity");
  REQUIRE(fresh);
  CHECK(fresh->value == 0.233);
  CHECK(fresh->age == 30s);
  CHECK_FALSE(fresh->stale);

  clk.advance(1min);
  CHECK_FALSE(c.get("electricity"));  // stale: not served on the happy path
  auto stale = c.get_stale("electricity");
  REQUIRE(stale);
  CHECK(stale->stale);
  CHECK(stale->age == 90s);

  clk.advance(1h);
  CHECK_FALSE(c.get_stale("electricity"));  // too old even for a failure
  CHECK(c.size() == 0);                     // and freed
}

TEST_CASE("put refreshes an entry's value and age", "[cache]") {
  manual_clock clk;
  result_cache<std::string, int> c{{.ttl = 1min, .clock = clk}};
  c.put("a", 1);
  clk.advance(2min);
  c.put("a", 2);
  auto e = c.get("a");
  REQUIRE(e);
  CHECK(e->value == 2);
  CHECK(e->age == 0s);
  CHECK(c.size() == 1);
}

TEST_CASE("the least recently used entry is evicted first", "[cache]") {
  result_cache<int, int> c{{.max_entries = 3}};
  c.put(1, 10);
  c.put(2, 20);
  c.put(3, 30);
  CHECK(c.get(1));  // 1 is now the most recent; 2 the least
  c.put(4, 40);
  CHECK(c.size() == 3);
  CHECK_FALSE(c.get(2));
  CHECK(c.get(1));
  CHECK(c.get(3));
  CHECK(c.get(4));
  CHECK(c.erase(3));
  CHECK_FALSE(c.erase(3));
  c.clear();
  CHECK(c.size() == 0);
}

TEST_CASE("memory stays bounded under a million distinct keys", "[cache]") {
  result_cache<std::uint64_t, std::uint64_t> c{{.max_entries = 1000}};
  std::size_t max_seen = 0;
  for (std::uint64_t k = 0; k < 1'000'000; ++k) {
    c.put(k, k);
    if ((k & 0xFFF) == 0) max_seen = std::max(max_seen, c.size());
  }
  max_seen = std::max(max_seen, c.size());
  CHECK(max_seen == 1000);
  CHECK(c.get(999'999));        // the newest are kept
  CHECK_FALSE(c.get(998'999));  // the 1001st newest is gone
}

TEST_CASE("copies share one cache; many threads keep it consistent", "[cache]") {
  result_cache<int, int> c{{.max_entries = 64}};
  auto copy = c;
  std::atomic<int> wrong{0};
  std::vector<std::jthread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5000; ++i) {
        const int key = (i * 7 + t) % 200;
        copy.put(key, key * 3);
        if (auto e = c.get_stale(key); e && e->value != key * 3) ++wrong;
        if (c.size() > 64) ++wrong;
      }
    });
  threads.clear();
  CHECK(wrong.load() == 0);
  CHECK(c.size() == 64);
}
