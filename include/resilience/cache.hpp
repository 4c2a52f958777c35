// resilience/cache.hpp: a thread-safe result cache with TTL and LRU eviction.
//
// The cached fallback (fallback.hpp) writes every good result here and, when
// a call fails, serves the last good result for the same arguments — even a
// stale one, reporting its age. Memory is bounded by max_entries: the least
// recently used entry goes first.
//
//   resilience::result_cache<std::string, double> factors{{.ttl = 10min, .max_entries = 50'000}};
//   factors.put("electricity", 0.233);
//   if (auto e = factors.get("electricity")) use(e->value);  // fresh entries only
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include "clock.hpp"

namespace resilience {
inline namespace v1 {

/// Settings of a result_cache.
struct cache_options {
  /// How long an entry is fresh (served by get()); default 5 min, must be in (0, max_duration].
  duration ttl = std::chrono::minutes{5};
  /// How old an entry may be and still be served on failure (get_stale());
  /// older entries are dropped. Default 24 h, must be >= ttl (duration::max(): kept forever).
  duration max_age = std::chrono::hours{24};
  /// The most entries kept; the least recently used one is evicted first.
  /// Default 10,000, must be > 0.
  std::size_t max_entries = 10'000;
  /// Where entry ages come from (default: the steady clock).
  clock_ref clock{};
};

/// A cache hit.
template <class T>
struct cache_entry {
  T value;       ///< the cached result
  duration age;  ///< time since it was stored
  bool stale;    ///< older than the ttl
};

/// Results by key, shared by copies (a stateful policy part): thread-safe,
/// one mutex; put() allocates only for a new key.
template <class Key, class T, class Hash = std::hash<Key>, class KeyEqual = std::equal_to<Key>>
class result_cache {
 public:
  using key_type = Key;
  using mapped_type = T;

  /// Validates the options; throws std::invalid_argument naming the bad field.
  explicit result_cache(cache_options options = {}) : s_{std::make_shared<state>(checked(std::move(options)))} {}

  /// Stores (or refreshes) the result for key, making it the most recently used.
  template <class V>
  void put(const Key& key, V&& value) const {
    const time_point now = s_->options.clock.now();
    std::lock_guard lock{s_->mutex};
    auto it = s_->map.find(key);
    if (it != s_->map.end()) {
      it->second.value = std::forward<V>(value);
      it->second.stored = now;
      s_->lru.splice(s_->lru.begin(), s_->lru, it->second.lru);
      return;
    }
    s_->lru.push_front(nullptr);
    try {
      it = s_->map.emplace(key, node{T(std::forward<V>(value)), now, s_->lru.begin()}).first;
    } catch (...) {
      s_->lru.pop_front();
      throw;
    }
    s_->lru.front() = &it->first;
    if (s_->map.size() > s_->options.max_entries) {
      s_->map.erase(*s_->lru.back());
      s_->lru.pop_back();
    }
  }

  /// The entry for key if it is fresh (younger than the ttl).
  std::optional<cache_entry<T>> get(const Key& key) const { return find(key, s_->options.ttl); }

  /// The entry for key if it is younger than max_age, fresh or stale: what a
  /// fallback may serve when the call failed.
  std::optional<cache_entry<T>> get_stale(const Key& key) const { return find(key, s_->options.max_age); }

  /// Removes key; true when it was there.
  bool erase(const Key& key) const {
    std::lock_guard lock{s_->mutex};
    auto it = s_->map.find(key);
    if (it == s_->map.end()) return false;
    s_->lru.erase(it->second.lru);
    s_->map.erase(it);
    return true;
  }

  /// Removes every entry.
  void clear() const {
    std::lock_guard lock{s_->mutex};
    s_->map.clear();
    s_->lru.clear();
  }

  /// Entries held now (never more than max_entries).
  std::size_t size() const {
    std::lock_guard lock{s_->mutex};
    return s_->map.size();
  }

  /// The options, as validated.
  const cache_options& options() const noexcept { return s_->options; }
  /// The clock entry ages are measured on.
  const clock_ref& clock() const noexcept { return s_->options.clock; }

 private:
  struct node {
    T value;
    time_point stored;
    typename std::list<const Key*>::iterator lru;
  };
  struct state {
    explicit state(cache_options o) : options{std::move(o)} {}
    cache_options options;
    std::mutex mutex;
    std::unordered_map<Key, node, Hash, KeyEqual> map;
    std::list<const Key*> lru;  // most recent first; points at the map's keys (stable)
  };

  static cache_options checked(cache_options o) {
    if (o.ttl <= duration::zero()) throw std::invalid_argument{"result_cache: ttl must be > 0"};
    checked_duration(o.ttl, "result_cache: ttl");
    if (o.max_age < o.ttl) throw std::invalid_argument{"result_cache: max_age must be >= ttl"};
    if (o.max_entries == 0) throw std::invalid_argument{"result_cache: max_entries must be > 0"};
    return o;
  }

  std::optional<cache_entry<T>> find(const Key& key, duration limit) const {
    const time_point now = s_->options.clock.now();
    std::lock_guard lock{s_->mutex};
    auto it = s_->map.find(key);
    if (it == s_->map.end()) return std::nullopt;
    const duration age = saturating_sub(now, it->second.stored);
    if (age >= s_->options.max_age) {  // too old to ever serve: free it now
      s_->lru.erase(it->second.lru);
      s_->map.erase(it);
      return std::nullopt;
    }
    if (age >= limit) return std::nullopt;
    s_->lru.splice(s_->lru.begin(), s_->lru, it->second.lru);
    return cache_entry<T>{it->second.value, age, age >= s_->options.ttl};
  }

  std::shared_ptr<state> s_;
};

}  // namespace v1
}  // namespace resilience
