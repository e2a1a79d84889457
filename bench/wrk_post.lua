-- wrk script: POST pre-signed deliveries, each line of $BENCH_BODIES once, in order.
-- A line is "<signature> <json body>": the signature (no spaces) is sent as the header named by
-- $BENCH_SIG_HEADER (default X-InboxOps-Signature). Run with one thread (-t1): every line is sent once,
-- so every event id is new; if the file runs out it starts over and counts a wrap.
-- $BENCH_RATE > 0 paces the load: each connection waits an exponentially distributed time
-- (mean conns/rate) after every response, so arrivals are Poisson-like at about that rate.
-- The response() hook counts 202 (accepted), 200 (duplicate) and other answers separately.

local path = assert(os.getenv("BENCH_BODIES"), "BENCH_BODIES is not set")
local rate = tonumber(os.getenv("BENCH_RATE") or "0")
local conns = tonumber(os.getenv("BENCH_CONNS") or "64")
local sig_header = os.getenv("BENCH_SIG_HEADER") or "X-InboxOps-Signature"
local threads = {}

accepted, duplicates, other, wraps = 0, 0, 0, 0
local file
local headers = { ["Content-Type"] = "application/json" }

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  file = assert(io.open(path, "rb"))
  math.randomseed(os.time())
end

if rate > 0 then
  local mean = conns * 1000 / rate
  function delay()
    return -math.log(1 - math.random()) * mean
  end
end

function request()
  local line = file:read("*l")
  if not line then
    file:seek("set", 0)
    wraps = wraps + 1
    line = file:read("*l")
  end
  local space = line:find(" ", 1, true)
  headers[sig_header] = line:sub(1, space - 1)
  return wrk.format("POST", nil, headers, line:sub(space + 1))
end

function response(status, hdrs, body)
  if status == 202 then
    accepted = accepted + 1
  elseif status == 200 then
    duplicates = duplicates + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local a, d, o, w = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted")
    d = d + t:get("duplicates")
    o = o + t:get("other")
    w = w + t:get("wraps")
  end
  local e = summary.errors
  io.write(string.format("BENCH requests %d\nBENCH duration_us %d\n", summary.requests, summary.duration))
  io.write(string.format("BENCH accepted %d\nBENCH duplicates %d\nBENCH other %d\nBENCH wraps %d\n", a, d, o, w))
  io.write(string.format("BENCH errors %d\n", e.connect + e.read + e.write + e.timeout))
  for _, p in ipairs({ 50, 90, 99, 99.9 }) do
    io.write(string.format("BENCH p%s_us %d\n", tostring(p), latency:percentile(p)))
  end
  io.write(string.format("BENCH max_us %d\n", latency.max))
end
