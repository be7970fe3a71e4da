-- Many scanners, each sending a verify and then thinking (exponential, mean HC_THINK_MS) before
-- the next: the offered rate stays about connections / think time whatever the server does,
-- as it does for real checkpoints. A scanner told 503 waits the Retry-After it was given
-- (HC_HONOUR_RETRY_AFTER=1, the default), as the service asks. Counts answers by status;
-- healthcode's bench/overload.py reads the "HC" line.
wrk.method = "POST"
wrk.body = os.getenv("HC_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("HC_TOKEN")
local think = tonumber(os.getenv("HC_THINK_MS") or "0")
local honour = (os.getenv("HC_HONOUR_RETRY_AFTER") or "1") == "1"
-- wrk calls delay() right after response() for the same connection, in the same thread
local retry_after_ms = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok, shed, other = 0, 0, 0
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

function delay()
  if retry_after_ms > 0 then
    local wait = retry_after_ms
    retry_after_ms = 0
    return wait
  end
  if think <= 0 then return 0 end
  return -math.log(1 - math.random()) * think
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1
  elseif status == 503 then
    shed = shed + 1
    if honour then retry_after_ms = (tonumber(headers["Retry-After"]) or 1) * 1000 end
  else other = other + 1 end
end

function done(summary, latency, requests)
  local o, s, x = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); s = s + t:get("shed"); x = x + t:get("other")
  end
  io.write(string.format("HC ok=%d shed=%d other=%d\n", o, s, x))
end
