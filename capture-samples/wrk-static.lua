-- wrk script for the benchmark capture: random static objects of 0.5 KiB to
-- 1 MiB from nginx (/bench/f-SIZEk.{json,bin}), weighted towards small ones;
-- half of the .json requests ask for gzip (nginx then answers chunked).
-- Each thread stops after WRK_LIMIT responses (default 10000); the seed is
-- WRK_SEED (default 1) plus the thread number.
--   wrk -t2 -c16 -d30s -s wrk-static.lua http://10.0.0.1

local sizes   = {"0.5", "1", "2", "4", "8", "16", "32", "64", "128", "256", "512", "1024"}
local weights = {200,   200, 150, 150, 100, 80,   50,   30,   10,    5,     2,     1}
local total = 0
for _, w in ipairs(weights) do total = total + w end

local counter = 0
local threads = {}

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

local n = 0
local limit = tonumber(os.getenv("WRK_LIMIT") or "10000")

function init(args)
  math.randomseed(tonumber(os.getenv("WRK_SEED") or "1") * 1000 + (tid or 0))
end

local function pick()
  local r = math.random(total)
  for i, w in ipairs(weights) do
    if r <= w then return sizes[i] end
    r = r - w
  end
  return sizes[1]
end

request = function()
  local size = pick()
  if math.random() < 0.5 then
    local path = "/bench/f-" .. size .. "k.json"
    if math.random() < 0.5 then
      return wrk.format("GET", path, {["Accept-Encoding"] = "gzip"})
    end
    return wrk.format("GET", path)
  end
  return wrk.format("GET", "/bench/f-" .. size .. "k.bin")
end

response = function(status, headers, body)
  n = n + 1
  if n >= limit then
    wrk.thread:stop()
  end
end
