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

-- setup(), response() and done() (the WRKJSON line) come from wrk_report.lua beside this file.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_report.lua")

function init(args)
  local rate = tonumber(args[2])
  local nthreads = tonumber(args[3])
  local me = (thread_no or 1) - 1
  drivers = {}
  local n = 0
  for line in io.lines(args[1]) do
    local id, token = line:match("^(%S+)%s+(%S+)$")
    if id then
      if n % nthreads == me then
        table.insert(drivers, {
          path = "/api/v1/drivers/" .. id .. "/location",
          auth = "Bearer " .. token,
          lat = 0, lon = 0, heading = 0,
        })
      end
      n = n + 1
    end
  end
  math.randomseed(4242 + me)
  for _, d in ipairs(drivers) do
    d.lat = 60.17 + (math.random() - 0.5) * 0.2
    d.lon = 24.94 + (math.random() - 0.5) * 0.6
    d.heading = math.random() * 2 * math.pi
  end
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
  d.heading = d.heading + (math.random() - 0.5) * 0.5
  d.lat = d.lat + math.cos(d.heading) * 40 / 111320
  d.lon = d.lon + math.sin(d.heading) * 40 / 55450
  if d.lat < 60.06 or d.lat > 60.28 then d.heading = d.heading + math.pi end
  if d.lon < 24.60 or d.lon > 25.28 then d.heading = d.heading + math.pi end
  local body = string.format('{"latitude":%.6f,"longitude":%.6f,"accuracy_m":8}', d.lat, d.lon)
  return wrk.format("PUT", d.path, {
    ["Authorization"] = d.auth,
    ["Content-Type"] = "application/json",
  }, body)
end
