-- wrk script for the soak benchmark: every simulated driver reports its position once per
-- cycle (PUT /api/v1/drivers/{id}/location), drivers taking turns so that each one reports
-- every `cycle_s` seconds, at a steady total rate. Arguments after "--":
--   drivers file ("driver_id token" per line), total rate (req/s), threads.
-- Pacing: each thread owns every n-th driver and hands out send slots at its share of the
-- rate (delay() waits for the connection's slot), so the offered rate does not depend on
-- how fast the server answers as long as enough connections are open.
-- Drivers drive at 10 m/s (40 m a 4 s cycle), each round a circle of its own in the city
-- (wrk_drivers.lua), so the segments go on with the same drives.

-- setup(), response() and done() (the WRKJSON line) come from wrk_report.lua beside this
-- file, now_ms(), load_drivers(), drive() and location_put() from wrk_drivers.lua.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "wrk_report.lua")
dofile(here .. "wrk_drivers.lua")

function init(args)
  local rate = tonumber(args[2])
  local nthreads = tonumber(args[3])
  drivers = load_drivers(args[1], nthreads, (thread_no or 1) - 1, 4242)
  interval_ms = 1000.0 / (rate / nthreads)
  next_slot = nil
  cursor = 0
end

function delay()
  local t = now_ms()
  if next_slot == nil then
    next_slot = t
  end
  local wait = next_slot - t
  next_slot = next_slot + interval_ms
  if wait < 0 then
    return 0
  end
  return wait
end

function request()
  cursor = cursor % #drivers + 1
  local d = drivers[cursor]
  drive(d, 10)
  local body = string.format('{"latitude":%.6f,"longitude":%.6f,"accuracy_m":8}', d.lat, d.lon)
  return location_put(d, body)
end
