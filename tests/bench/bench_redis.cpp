// Redis rate limiter costs against their baselines, in the same run, on a
// redis-server of the benchmark's own (tests/support/redis_server.hpp; the
// rows are skipped where none is installed):
//  - strict: one decision (EVALSHA of the token bucket, the server's TIME)
//    against a raw hiredis EVALSHA of a no-op script, alone and with the
//    same keys and arguments, on the same kind of socket (target <= 1.2x);
//  - leased: decisions per second of a leased limiter (target >= 1,000,000/s);
//  - local fallback (Redis down, backing off) against the local limiter it
//    falls back to.
#include <resilience/rate_limit.hpp>
#include <resilience/redis.hpp>

#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "baselines.hpp"
#include "support/redis_server.hpp"

using namespace resilience;

namespace {

support::redis_server& server() {
  static support::redis_server s;
  return s;
}

// Grants always: the benchmarks time the grant path.
redis::limiter_options always_grants(redis::on_failure f = redis::on_failure::raise) {
  return {.limit = {.requests_per_second = 1e9, .burst_size = 1'000'000}, .failure = f};
}

// Resets the server's command statistics.
void reset_server_stats() { server().connect()->command({"CONFIG", "RESETSTAT"}); }

// The server's own time per EVALSHA since the reset (INFO commandstats,
// usec_per_call): the script's cost, apart from the machine's scheduling.
void report_server_time(benchmark::State& state) {
  auto r = server().connect()->command({"INFO", "commandstats"});
  const std::string_view info{r->str, r->len};
  const auto at = info.find("cmdstat_evalsha:");
  if (at == std::string_view::npos) return;
  const auto field = info.find("usec_per_call=", at);
  if (field == std::string_view::npos) return;
  state.counters["server_us_per_call"] = benchmark::Counter(std::strtod(info.data() + field + 14, nullptr));
}

// A raw hiredis EVALSHA of `script` with `nkeys` keys and the arguments that follow.
void raw_evalsha(benchmark::State& state, const char* script, std::vector<std::string> keys_and_args, int nkeys) {
  if (!server().running()) {
    state.SkipWithError("redis-server is not installed");
    return;
  }
  redisContext* c = redisConnectUnix(server().socket().c_str());
  auto* loaded = static_cast<redisReply*>(redisCommand(c, "SCRIPT LOAD %s", script));
  std::vector<std::string> args{"EVALSHA", std::string{loaded->str, loaded->len}, std::to_string(nkeys)};
  freeReplyObject(loaded);
  args.insert(args.end(), keys_and_args.begin(), keys_and_args.end());
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lengths.push_back(a.size());
  }
  reset_server_stats();
  bench::alloc_scope a;
  for (auto _ : state) {
    auto* r = static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lengths.data()));
    benchmark::DoNotOptimize(r->type);
    freeReplyObject(r);
  }
  a.report(state);
  report_server_time(state);
  redisFree(c);
}

// The baseline: a no-op script, no keys.
void BM_raw_evalsha_noop(benchmark::State& state) { raw_evalsha(state, "return {1, 0}", {}, 0); }
BENCHMARK(BM_raw_evalsha_noop)->UseRealTime();

// The same no-op with a decision's request (2 keys, 6 arguments): what the
// request's size costs apart from the script.
void BM_raw_evalsha_noop_same_request(benchmark::State& state) {
  raw_evalsha(state, "return {1, 0}",
              {"resilience:rl:{0123456789abcdef}tb:3:api:acme", "resilience:rl:{0123456789abcdef}hold:3:api", "1",
               "1000000", "1", "", "", "0"},
              2);
}
BENCHMARK(BM_raw_evalsha_noop_same_request)->UseRealTime();

// The same no-op through redis::connection::eval: the client side's own cost.
void BM_connection_eval_noop(benchmark::State& state) {
  if (!server().running()) {
    state.SkipWithError("redis-server is not installed");
    return;
  }
  static constexpr redis::script noop{"return {1, 0}"};
  auto conn = server().connect();
  (void)conn->eval(noop, {}, {});
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(conn->eval(noop, {}, {})->type);
  a.report(state);
}
BENCHMARK(BM_connection_eval_noop)->UseRealTime();

void BM_strict_decision(benchmark::State& state) {
  if (!server().running()) {
    state.SkipWithError("redis-server is not installed");
    return;
  }
  redis::rate_limiter limits{server().connect(), "api", always_grants()};
  (void)limits.try_acquire("acme", 1);  // connect and load the script outside the loop
  reset_server_stats();
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(limits.try_acquire("acme", 1).allowed);
  a.report(state);
  report_server_time(state);
}
BENCHMARK(BM_strict_decision)->UseRealTime();

// Leased: k permits per round trip (up to 10,000), the rest spent locally.
void BM_leased_decision(benchmark::State& state) {
  if (!server().running()) {
    state.SkipWithError("redis-server is not installed");
    return;
  }
  static redis::rate_limiter limits{server().connect(), "api-leased", always_grants()};
  static redis::leased_rate_limiter leased{limits, {.max_lease = 10'000}};
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(leased.try_acquire("acme", 1).allowed);
  a.report(state);
  state.SetItemsProcessed(state.iterations());
  state.counters["round_trips_per_decision"] =
      benchmark::Counter(static_cast<double>(leased.leases()) / static_cast<double>(leased.leased()));
}
BENCHMARK(BM_leased_decision)->UseRealTime();
BENCHMARK(BM_leased_decision)->Threads(2)->UseRealTime();

// The local limiter the fallback uses (the quota / expected_instances, per tenant).
void BM_local_limiter(benchmark::State& state) {
  static resilience::rate_limiter local;
  local.configure("api", {.requests_per_second = 1e9, .burst_size = 1'000'000});
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(local.try_acquire("api", "acme", 1).allowed);
  a.report(state);
}
BENCHMARK(BM_local_limiter);

// Redis down: the connection backs off (an hour here), and every decision
// goes to the local fallback without a connect attempt or an exception.
void BM_local_fallback(benchmark::State& state) {
  auto conn =
      std::make_shared<redis::connection>(redis::connection_options{.unix_socket = "/nonexistent/redis.sock",
                                                                    .reconnect_backoff = std::chrono::hours{1},
                                                                    .max_reconnect_backoff = std::chrono::hours{1}});
  redis::rate_limiter limits{conn, "api", always_grants(redis::on_failure::local)};
  (void)limits.try_acquire("acme", 1);  // fails to connect: backing off from now
  bench::alloc_scope a;
  for (auto _ : state) benchmark::DoNotOptimize(limits.try_acquire("acme", 1).allowed);
  a.report(state);
}
BENCHMARK(BM_local_fallback);

}  // namespace

BENCHMARK_MAIN();
