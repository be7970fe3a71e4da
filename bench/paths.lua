-- wrk script: GET each path listed in the file $HC_PATHS in turn, with a bearer token
local token = os.getenv("HC_TOKEN")
wrk.headers["Authorization"] = "Bearer " .. token
local paths = {}
for line in io.lines(os.getenv("HC_PATHS")) do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
