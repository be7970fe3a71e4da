-- Many scanners, each sending a verify and then thinking (exponential, mean HC_THINK_MS) before
-- the next: the offered rate stays about connections / think time whatever the server does,
-- as it does for real checkpoints. Counts answers by status; healthcode's bench/overload.py
-- reads the "HC" line.
wrk.method = "POST"
wrk.body = os.getenv("HC_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("HC_TOKEN")
local think = tonumber(os.getenv("HC_THINK_MS") or "0")
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok, shed, other = 0, 0, 0
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

function delay()
  if think <= 0 then return 0 end
  return -math.log(1 - math.random()) * think
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1
  elseif status == 503 then shed = shed + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local o, s, x = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); s = s + t:get("shed"); x = x + t:get("other")
  end
  io.write(string.format("HC ok=%d shed=%d other=%d\n", o, s, x))
end
