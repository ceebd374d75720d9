-- wrk script of bench/bench_http.py: POSTs precomputed, individually signed WeChat requests.
--
--   wrk -t1 -c32 -d10s -s bench/wrk_post.lua http://127.0.0.1:PORT -- REQUESTS_FILE PREFIX THREADS
--
-- REQUESTS_FILE has one request per line: "<path?query>\t<body>". Every message carries its own
-- MsgId (WeChat's retry identity), so none is answered as a retry of another; thread i of
-- THREADS takes lines i, i+THREADS, ... A response counts as answered when it is a 200 whose body
-- starts with PREFIX ("<xml>": a passive reply); a bare "success" and anything else are counted
-- apart. "reused" counts requests sent after the file ran out (they would be duplicates).

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  local path = args[1]
  prefix = args[2] or "<xml>"
  local nthreads = tonumber(args[3] or "1")
  reqs = {}
  local n = 0
  for line in io.lines(path) do
    if n % nthreads == id then
      local tab = string.find(line, "\t", 1, true)
      reqs[#reqs + 1] = wrk.format("POST", string.sub(line, 1, tab - 1),
                                   {["Content-Type"] = "text/xml"}, string.sub(line, tab + 1))
    end
    n = n + 1
  end
  index = 1
  answered = 0
  success_only = 0
  other = 0
  reused = 0
end

function request()
  local r = reqs[index]
  index = index + 1
  if index > #reqs then
    index = 1
  end
  if wrapped then
    reused = reused + 1
  end
  if index == 1 then
    wrapped = true
  end
  return r
end

function response(status, headers, body)
  if status == 200 and string.sub(body, 1, #prefix) == prefix then
    answered = answered + 1
  elseif status == 200 and body == "success" then
    success_only = success_only + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local a, s, o, r = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("answered")
    s = s + t:get("success_only")
    o = o + t:get("other")
    r = r + t:get("reused")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"answered": %d, "success_only": %d, "other": %d, "reused": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, a, s, o, r))
end
