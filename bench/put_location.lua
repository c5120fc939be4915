-- wrk script: PUT /api/v1/drivers/{id}/location, rotating over the drivers listed in the
-- file given after "--" (one "driver_id token" per line), with coordinates varying over the
-- 39 x 25 km city box around 60.17, 24.94. Counts every response that is not 2xx and
-- prints one machine-readable line (WRKJSON {...}) at the end.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_no", #threads)
end

function init(args)
  drivers = {}
  for line in io.lines(args[1]) do
    local id, token = line:match("^(%S+)%s+(%S+)$")
    if id then
      table.insert(drivers, { "/api/v1/drivers/" .. id .. "/location", "Bearer " .. token })
    end
  end
  if #drivers == 0 then
    error("no drivers in " .. tostring(args[1]))
  end
  counter = (thread_no or 1) * 97
  non_2xx = 0
  math.randomseed(1000 + (thread_no or 0))
end

function request()
  counter = counter + 1
  local driver = drivers[(counter % #drivers) + 1]
  local body = string.format(
    '{"latitude":%.6f,"longitude":%.6f}',
    60.17 + (math.random() - 0.5) * 0.2246,
    24.94 + (math.random() - 0.5) * 0.6996
  )
  return wrk.format("PUT", driver[1], {
    ["Authorization"] = driver[2],
    ["Content-Type"] = "application/json",
  }, body)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non_2xx") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,'
      .. '"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, bad, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean
  ))
end
