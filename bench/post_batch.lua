-- wrk script: POST /api/v1/drivers/{id}/locations with a batch of `batch` buffered points
-- (argument 2 after "--"; argument 1 is the "driver_id token" file). Each driver's points
-- carry strictly increasing recorded_at values, 1 ms apart, starting an hour ago, each
-- 30 m on from the last (within the speed rule's 50 m noise allowance), so that every point
-- is a new live position, as a phone coming back online with a backlog would send them.

-- setup(), response() and done() (the WRKJSON line) come from wrk_report.lua beside this file.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_report.lua")

function init(args)
  batch = tonumber(args[2])
  drivers = {}
  local me = (thread_no or 1) - 1
  local n = 0
  for line in io.lines(args[1]) do
    local id, token = line:match("^(%S+)%s+(%S+)$")
    if id then
      if n % 2 == me % 2 then
        table.insert(drivers, {
          path = "/api/v1/drivers/" .. id .. "/locations",
          auth = "Bearer " .. token,
          ms = (os.time() - 3600) * 1000,
          lat = 60.17 + n * 0.001,
          lon = 24.94,
          step = 0.0005, -- about 28 m east at this latitude; turns back at the city's edge
        })
      end
      n = n + 1
    end
  end
  cursor = 0
end

local function stamp(ms)
  local seconds = math.floor(ms / 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", seconds) .. string.format(".%03dZ", ms % 1000)
end

function request()
  cursor = cursor % #drivers + 1
  local d = drivers[cursor]
  local points = {}
  for i = 1, batch do
    d.ms = d.ms + 1
    if d.lon + d.step > 25.2 or d.lon + d.step < 24.7 then d.step = -d.step end
    d.lon = d.lon + d.step
    points[i] = string.format(
      '{"latitude":%.6f,"longitude":%.6f,"recorded_at":"%s"}', d.lat, d.lon, stamp(d.ms)
    )
  end
  local body = '{"locations":[' .. table.concat(points, ",") .. "]}"
  return wrk.format("POST", d.path, {
    ["Authorization"] = d.auth,
    ["Content-Type"] = "application/json",
  }, body)
end
