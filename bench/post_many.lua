-- wrk script: POST each JSON body listed (one per line) in the file $HC_BODIES in turn, with a
-- bearer token from $HC_TOKEN
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("HC_TOKEN")
local bodies = {}
for line in io.lines(os.getenv("HC_BODIES")) do bodies[#bodies + 1] = line end
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
