-- wrk script for the soak benchmark: every simulated driver reports its position once per
-- cycle (PUT /api/v1/drivers/{id}/location), drivers taking turns so that each one reports
-- every `cycle_s` seconds, at a steady total rate. Arguments after "--":
--   drivers file ("driver_id token" per line), total rate (req/s), threads.
-- Pacing: each thread owns every n-th driver and hands out send slots at its share of the
-- rate (delay() waits for the connection's slot), so the offered rate does not depend on
-- how fast the server answers as long as enough connections are open.
-- Drivers drive: each report moves the driver 40 m (10 m/s over a 4 s cycle) on a heading
-- that turns a little each time, inside the 39 x 25 km city box around 60.17, 24.94.

local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_nsec; } timespec_t;
  int clock_gettime(int clk_id, timespec_t *tp);
]]
local ts = ffi.new("timespec_t")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

-- setup(), response() and done() (the WRKJSON line) come from wrk_report.lua beside this
-- file, load_drivers(), drive() and location_put() from wrk_drivers.lua.
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
  drive(d, 40)
  local body = string.format('{"latitude":%.6f,"longitude":%.6f,"accuracy_m":8}', d.lat, d.lon)
  return location_put(d, body)
end
