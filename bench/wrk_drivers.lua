-- Shared by the location wrk scripts of bench/ (loaded with dofile): the drivers of one
-- wrk thread, and how they drive.

-- The drivers listed in `path` ("driver_id token" per line) that thread `me` (0-based) of
-- `nthreads` owns (every n-th), each placed at random in the 39 x 25 km city box around
-- 60.17, 24.94 with a random heading. Errors if the thread gets none.
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
    d.lat = 60.17 + (math.random() - 0.5) * 0.2
    d.lon = 24.94 + (math.random() - 0.5) * 0.6
    d.heading = math.random() * 2 * math.pi
  end
  return owned
end

-- Moves driver `d` `metres` on a heading that turns a little each time, turning back at
-- the edges of the city box.
function drive(d, metres)
  d.heading = d.heading + (math.random() - 0.5) * 0.5
  d.lat = d.lat + math.cos(d.heading) * metres / 111320
  d.lon = d.lon + math.sin(d.heading) * metres / 55450
  if d.lat < 60.06 or d.lat > 60.28 then d.heading = d.heading + math.pi end
  if d.lon < 24.60 or d.lon > 25.28 then d.heading = d.heading + math.pi end
end

-- The PUT of driver `d`'s location with JSON `body`, its token attached.
function location_put(d, body)
  return wrk.format("PUT", d.path, {
    ["Authorization"] = d.auth,
    ["Content-Type"] = "application/json",
  }, body)
end
