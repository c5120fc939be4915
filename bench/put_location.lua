-- wrk script: PUT /api/v1/drivers/{id}/location for the drivers listed in the file given
-- after "--" (one "driver_id token" per line), then the number of wrk threads. Each thread
-- owns every n-th driver (so no two threads report one driver) and takes them in turn.
-- Drivers drive, as in soak.lua: at 10 m/s, each round a circle of its own in the city, the
-- position a function of the clock (wrk_drivers.lua). Every report is then a plausible
-- new position that the store files as live, in the warm-up and in every round after it
-- (random points across the city would mostly be refused as jumps, a cheaper path than the
-- one drivers take).
-- Counts every response that is not 2xx and prints one machine-readable line (WRKJSON
-- {...}) at the end.

-- setup(), response() and done() (the WRKJSON line) come from wrk_report.lua beside this
-- file, load_drivers(), drive() and location_put() from wrk_drivers.lua.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "wrk_report.lua")
dofile(here .. "wrk_drivers.lua")

function init(args)
  drivers = load_drivers(args[1], tonumber(args[2] or "1"), (thread_no or 1) - 1, 1000)
  cursor = 0
end

function request()
  cursor = cursor % #drivers + 1
  local d = drivers[cursor]
  drive(d, 10)
  local body = string.format('{"latitude":%.6f,"longitude":%.6f}', d.lat, d.lon)
  return location_put(d, body)
end
