-- wrk script: POST /api/v1/chat with a token, optional session pool and pacing.
-- Settings come from the environment (read when each wrk thread loads the script):
--   ROBOT_TOKEN      the robot's access token (required)
--   BENCH_SESSIONS   size of the session pool each thread cycles through; 0 = every
--                    request starts a new session (default 1000)
--   BENCH_DELAY_MS   pause after each response, per connection (default 0 = closed loop;
--                    1000 = the guide's "1 request/s per user" with one connection per user)
--   BENCH_USERS      connections per thread whose first pause is given a random phase
--   BENCH_HEALTH_EVERY  every Nth request is GET /health instead (default 0 = never)
-- done() prints one line "BENCH_JSON {...}" with counts, errors and latency percentiles (us).

local token = os.getenv("ROBOT_TOKEN") or ""
local sessions = tonumber(os.getenv("BENCH_SESSIONS") or "1000")
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local health_every = tonumber(os.getenv("BENCH_HEALTH_EVERY") or "0")
local counter = 0
local tid = 0
local threads = {}
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}

function init(args)
  math.randomseed(tid * 7919 + 17)
end

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  if health_every > 0 and counter % health_every == 0 then
    return wrk.format("GET", "/health")
  end
  local body
  if sessions > 0 then
    body = string.format('{"message":"hello robot %d","session_id":"bench-%d-%d"}',
                         counter, tid, counter % sessions)
  else
    body = string.format('{"message":"hello robot %d"}', counter)
  end
  return wrk.format("POST", "/api/v1/chat", headers, body)
end

-- Pacing: the first pause of each connection gets a random phase in [0, delay), so the
-- users are spread over the second like independent users rather than arriving in one
-- burst; after that every user waits exactly delay_ms after each response.
local users = tonumber(os.getenv("BENCH_USERS") or "0")
local delays = 0
if delay_ms > 0 then
  function delay()
    delays = delays + 1
    if delays <= users then
      return delay_ms + math.random(0, delay_ms - 1)
    end
    return delay_ms
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d},"latency_us":{"min":%d,"mean":%.1f,"max":%d,"p50":%d,' ..
    '"p90":%d,"p95":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(95), latency:percentile(99), latency:percentile(99.9)))
end
