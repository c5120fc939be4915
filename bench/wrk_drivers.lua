-- Shared by the location wrk scripts of bench/ (loaded with dofile): the drivers of one
-- wrk thread, how they drive, and a clock.
--
-- Each driver goes round a circle of its own (a radius of 0.5-3 km) inside the
-- 39 x 25 km city box around 60.17, 24.94 at a steady speed, its position a function of
-- the clock. So runs back to back (a warm-up and the rounds, the soak's segments) go on
-- with the same drives, and every report is a move the store takes as plausible. (Drivers
-- that start each run where they started the last would jump back there from where the
-- store last saw them, and have their fixes refused as implausible until the jump fits
-- the speed limit: no GEO write, a cheaper path than a real move.)

local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_nsec; } timespec_t;
  int clock_gettime(int clk_id, timespec_t *tp);
]]
local ts = ffi.new("timespec_t")

-- Milliseconds on CLOCK_MONOTONIC: one clock for every process on the machine.
function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

-- The drivers listed in `path` ("driver_id token" per line) that thread `me` (0-based) of
-- `nthreads` owns (every n-th), each given a circle at random. Errors if the thread gets
-- none.
function load_drivers(path, nthreads, me, seed)
  local owned = {}
  local n = 0
  for line in io.lines(path) do
    local id, token = line:match("^(%S+)%s+(%S+)$")
    if id then
      if n % nthreads == me then
        table.insert(owned, {
          path = "/api/v1/drivers/" .. id .. "/location",
          auth = "Bearer " .. token,
        })
      end
      n = n + 1
    end
  end
  if #owned == 0 then
    error("no drivers for thread " .. me .. " in " .. tostring(path))
  end
  math.randomseed(seed + me)
  for _, d in ipairs(owned) do
    d.radius = 500 + math.random() * 2500
    -- The centre keeps the whole circle in the box (3 km is 0.027 deg of latitude and
    -- 0.054 of longitude here).
    d.centre_lat = 60.17 + (math.random() - 0.5) * (0.2 - 2 * 0.027)
    d.centre_lon = 24.94 + (math.random() - 0.5) * (0.6 - 2 * 0.054)
    d.phase = math.random() * 2 * math.pi
    d.turn = math.random() < 0.5 and -1 or 1
  end
  return owned
end

-- Puts driver `d` where it is now on its circle, driving at `speed` metres a second.
function drive(d, speed)
  local angle = d.phase + d.turn * speed * now_ms() / 1000 / d.radius
  d.lat = d.centre_lat + math.cos(angle) * d.radius / 111320
  d.lon = d.centre_lon + math.sin(angle) * d.radius / 55450
end

-- The PUT of driver `d`'s location with JSON `body`, its token attached.
function location_put(d, body)
  return wrk.format("PUT", d.path, {
    ["Authorization"] = d.auth,
    ["Content-Type"] = "application/json",
  }, body)
end
