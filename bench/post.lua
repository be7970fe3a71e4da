-- wrk script: POST the same JSON body with a bearer token (both from the environment)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("HC_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
wrk.body = os.getenv("HC_BODY")
