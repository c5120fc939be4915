-- wrk script: PUT /api/v1/drivers/{id}/location, rotating over the drivers listed in the
-- file given after "--" (one "driver_id token" per line), with coordinates varying over the
-- 39 x 25 km city box around 60.17, 24.94. Counts every response that is not 2xx and
-- prints one machine-readable line (WRKJSON {...}) at the end.

-- setup(), response() and done() (the WRKJSON line) come from wrk_report.lua beside this file.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_report.lua")

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
