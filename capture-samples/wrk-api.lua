-- wrk script for the API server: cycles through a fixed list of requests
-- (GETs and JSON POSTs) and stops each thread after WRK_LIMIT responses
-- (default 300), so the run is bounded in count as well as by -d.
--   wrk -t1 -c2 -d5s -s wrk-api.lua http://10.0.0.1:8080

local reqs = {
  {"GET",  "/api/users/1"},
  {"GET",  "/api/products?q=widget&limit=5"},
  {"POST", "/api/login", '{"username":"wrk","password":"hunter2"}'},
  {"GET",  "/api/users/77"},
  {"POST", "/api/orders", '{"items":[{"sku":"SKU-00077","qty":3}]}'},
  {"GET",  "/api/orders/0b7c7e6e-2f0a-4f43-9d4c-1c1f8a3e9e01"},
  {"POST", "/api/login", '{"username":"wrk","password":"nope"}'},
  {"GET",  "/api/missing"},
}
local i = 0
local n = 0
local limit = tonumber(os.getenv("WRK_LIMIT") or "300")

request = function()
  i = i % #reqs + 1
  local r = reqs[i]
  if r[3] then
    return wrk.format(r[1], r[2], {["Content-Type"] = "application/json"}, r[3])
  end
  return wrk.format(r[1], r[2])
end

response = function(status, headers, body)
  n = n + 1
  if n >= limit then
    wrk.thread:stop()
  end
end
