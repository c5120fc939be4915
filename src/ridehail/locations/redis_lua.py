"""The Lua scripts behind :mod:`ridehail.locations.redis_store`.

Kept apart from the Python so that the key layout and the rules each script applies can be
read in one place. The layout they share (``P`` is the store's key prefix followed by
``loc:``)::

    P{<region>}:geo      GEO set of the region's searchable drivers
    P{<region>}:seen     sorted set, driver id -> time of its position (epoch ms, see below)
    Pdrv:{<driver>}      the driver's state: live fix record, trace flag, region
    Ptrace:{<driver>}    the open trip trace: records appended one after another

A record is 48 bytes, ``struct.pack('<qddddd', µs, lat, lon, heading, speed, accuracy)``
with NaN for a missing optional value. The state is the live fix's record, then one byte
("1" while a trace was open at the last write, else "0"), then the region the driver is
filed under ("" when GEO cannot index the position).

The trace flag saves the common write an EXISTS on the trace key: only a driver flagged
(or without a state) has the key checked, and a flag whose trace has expired is cleared.

A state's TTL is set when the key is created and renewed whenever a new live fix is in
another half-TTL step of fix time than the one it replaces, so a driver who keeps reporting
never expires and one who stops does between half a TTL and a TTL later. Rewrites in
between keep the TTL (SET ... KEEPTTL): a SET with PX is also rewritten by Redis for
propagation, work a rewrite that keeps the TTL does not cause.

On one Redis, a member's ``seen`` time is renewed only when its driver enters the region
or a fix enters a new step of fix time (half the stale window), not on every fix: the time
may lag the position by up to a step, and pruning allows for that. It saves the second
sorted-set update on most fixes. Every write puts the GEO member in, and both sets always
hold the same members, so when the GEO ZADD adds another number of new members than there
are drivers entering the region (less any of them still filed there), some member was
pruned or expired meanwhile, and all of the region's drivers get their time.

The ``{...}`` hash tags put a region's two keys in one cluster slot and a driver's two keys
in another, which is what lets every script below except :data:`INGEST` (one Redis only)
touch a single slot.
"""

from __future__ import annotations

from typing import Final

#: Byte offsets (1-based, as Lua counts) of the trace flag and the region in a state.
_FLAG = 49
_REGION = 50

#: Lua's ``unpack`` refuses more than about 8,000 values, so bulk commands go in slices of
#: at most this many arguments (a multiple of 2 and of 3, so members never straddle).
_SLICE = 3000

_BULK = f"""
local function bulk(command, key, args)
  local count, total = #args, 0
  for first = 1, count, {_SLICE} do
    local first_last = math.min(first + {_SLICE - 1}, count)
    total = total + redis.call(command, key, unpack(args, first, first_last))
  end
  return total
end
"""

# The same haversine as ridehail.kernel.geo, so that both stores judge a jump alike.
_TOO_FAR = """
local function too_far(lat1, lon1, lat2, lon2, seconds, max_speed, slack)
  local p1, p2 = math.rad(lat1), math.rad(lat2)
  local a = math.sin((p2 - p1) / 2) ^ 2
    + math.cos(p1) * math.cos(p2) * math.sin(math.rad(lon2 - lon1) / 2) ^ 2
  local metres = 2 * 6371008.8 * math.asin(math.min(1, math.sqrt(a)))
  return metres > max_speed * seconds + slack
end
"""

#: Values per fix in :data:`INGEST`'s packed argument.
INGEST_FIELDS: Final = 9

#: One Redis: a whole batch of fixes in one call, so that ingest costs one round trip per
#: batch and the server does no more than the rules require. Keys are derived here from
#: the prefix (allowed outside a cluster, where a script may touch any key).
#:
#: ARGV: the fixes (a msgpack array, INGEST_FIELDS values each), their count, key prefix
#: + "loc:", prune bound (ZRANGEBYSCORE max, e.g. "(1700000000000"), members pruned per
#: write, max speed (m/s, 0 = no limit), jump slack (m), state TTL (ms), the step of fix
#: time (µs) that renews it, region TTL (ms), channel prefix ("" = announce nothing),
#: channel suffix, and the step of fix time (µs) that renews a ``seen`` time.
#:
#: Each fix: driver id, recorded µs, latitude, longitude, region hex ("" = not searchable),
#: its record, its JSON message for followers ("" when nobody follows), its GEO score (the
#: 52-bit geohash GEOADD would compute: ZADD with it skips GEOADD's parsing and encoding,
#: about a quarter of the cost of filing a member) and its ``seen`` score (whole epoch ms).
#: Both scores come as text: Redis would format a Lua number with printf.
#:
#: Each state is first replaced by what the driver's last fix in the batch would make it,
#: reading the old one in the same command (SET ... GET: one key lookup where GET and SET
#: take two, the largest single saving). The rules then run fix by fix against the old
#: state as the batch changes it, and the writes follow: the few states the guess got
#: wrong put right, one ZADD per region and sorted set, one PUBLISH per driver with the
#: newest live fix. This ends in the same keys as one call per fix would.
#: Returns one character per fix: "1" live, "0" older, "2" implausible.
INGEST: Final = (
    _BULK
    + _TOO_FAR
    + f"""
local f = cmsgpack.unpack(ARGV[1])
local n = tonumber(ARGV[2])
local P = ARGV[3]
local prune_below = ARGV[4]
local prune_per_write = tonumber(ARGV[5])
local max_speed = tonumber(ARGV[6])
local slack = tonumber(ARGV[7])
local state_ttl = ARGV[8]
local renew_us = tonumber(ARGV[9])
local region_ttl = ARGV[10]
local channel_prefix = ARGV[11]
local channel_suffix = ARGV[12]
local seen_step = tonumber(ARGV[13])
local call, sub, floor = redis.call, string.sub, math.floor

-- Each driver once, in order of first appearance, and the index of its last fix.
local slot, ids, keys, last = {{}}, {{}}, {{}}, {{}}
for i = 1, n do
  local b = (i - 1) * {INGEST_FIELDS}
  local id = f[b + 1]
  local j = slot[id]
  if not j then
    j = #ids + 1
    slot[id], ids[j], keys[j] = j, id, P .. 'drv:{{' .. id .. '}}'
  end
  last[j] = b
end

-- Write ahead: each state becomes what its driver's last fix makes it (traced or not is
-- settled below), and the old one comes back.
local states, old_us, last_us, last_lat, last_lon = {{}}, {{}}, {{}}, {{}}, {{}}
local region, trace, live, filed, stamp = {{}}, {{}}, {{}}, {{}}, {{}}
for j = 1, #ids do
  local b = last[j]
  local state = call('SET', keys[j], f[b + 6] .. '0' .. f[b + 5], 'KEEPTTL', 'GET')
  states[j] = state
  local flagged = true
  if state then
    last_us[j], last_lat[j], last_lon[j] = struct.unpack('<i8dd', state)
    old_us[j] = last_us[j]
    region[j] = sub(state, {_REGION})
    filed[j] = region[j]
    flagged = string.byte(state, {_FLAG}) == 49  -- "1"
  end
  if flagged then
    local key = P .. 'trace:{{' .. ids[j] .. '}}'
    if call('EXISTS', key) == 1 then trace[j] = key end
  end
end

-- The rules, fix by fix.
local codes = {{}}
for i = 1, n do
  local b = (i - 1) * {INGEST_FIELDS}
  local j = slot[f[b + 1]]
  local us = f[b + 2]
  if trace[j] then call('APPEND', trace[j], f[b + 6]) end
  local code = '1'
  local before = last_us[j]
  if before then
    if before >= us then
      code = '0'
    elseif max_speed > 0 then
      local lat0, lon0 = last_lat[j], last_lon[j]
      if not lat0 then
        lat0, lon0 = f[live[j] + 3], f[live[j] + 4]
      end
      if too_far(lat0, lon0, f[b + 3], f[b + 4], (us - before) / 1000000, max_speed, slack) then
        code = '2'
      end
    end
  end
  if code == '1' then
    local hex = f[b + 5]
    if not before or hex ~= filed[j] or floor(us / seen_step) ~= floor(before / seen_step) then
      stamp[j] = b  -- this fix's time goes into seen
    end
    filed[j] = hex
    last_us[j], last_lat[j], last_lon[j], live[j] = us, nil, nil, b
  end
  codes[i] = code
end

-- The writes: each driver's newest live fix.
local regions, touched = {{}}, {{}}
local function region_of(hex)
  local r = regions[hex]
  if not r then
    r = {{geo = {{}}, seen = {{}}, gone = {{}}, entering = {{}}, kept = {{}}, kept_b = {{}},
      writes = 0, stamps = 0}}
    regions[hex] = r
    touched[#touched + 1] = hex
  end
  return r
end
for j = 1, #ids do
  local b, key = live[j], keys[j]
  if not b then
    -- Nothing live after all: put the old state back (or none).
    if states[j] then call('SET', key, states[j], 'KEEPTTL') else call('DEL', key) end
  else
    local id, hex = ids[j], f[b + 5]
    if b ~= last[j] then
      call('SET', key, f[b + 6] .. (trace[j] and '1' or '0') .. hex, 'KEEPTTL')
    elseif trace[j] then
      call('SETRANGE', key, {_FLAG - 1}, '1')
    end
    if not states[j] or floor(f[b + 2] / renew_us) ~= floor(old_us[j] / renew_us) then
      call('PEXPIRE', key, state_ttl)
    end
    local was = region[j]
    if was and was ~= '' and was ~= hex then
      local gone = region_of(was).gone
      gone[#gone + 1] = id
    end
    if hex ~= '' then
      local r = region_of(hex)
      local at = r.writes * 2
      r.geo[at + 1], r.geo[at + 2] = f[b + 8], id
      r.writes = r.writes + 1
      if was ~= hex then
        r.entering[#r.entering + 1] = id  -- always stamped: it entered
      end
      local s = stamp[j]
      if s then
        at = r.stamps * 2
        r.seen[at + 1], r.seen[at + 2] = f[s + 9], id
        r.stamps = r.stamps + 1
      else
        r.kept[#r.kept + 1], r.kept_b[#r.kept_b + 1] = id, b
      end
    end
    if f[b + 7] ~= '' then  -- a message only for followed drivers
      call('PUBLISH', channel_prefix .. id .. channel_suffix, f[b + 7])
    end
  end
end

-- Each region touched: leavers out, stale members pruned, arrivals in, expiry pushed back.
for _, hex in ipairs(touched) do
  local r = regions[hex]
  local geo_key, seen_key = P .. '{{' .. hex .. '}}:geo', P .. '{{' .. hex .. '}}:seen'
  if #r.gone > 0 then
    bulk('ZREM', geo_key, r.gone)
    bulk('ZREM', seen_key, r.gone)
  end
  if r.writes > 0 then
    local stale = call('ZRANGEBYSCORE', seen_key, '-inf', prune_below, 'LIMIT', 0,
      math.min(prune_per_write * r.writes, {_SLICE}))
    if #stale > 0 then
      bulk('ZREM', geo_key, stale)
      bulk('ZREM', seen_key, stale)
    end
    local kept, entering = r.kept, r.entering
    local expected = #entering
    if #kept > 0 and #entering > 0 then
      -- An entering driver still filed here (never in practice) is not new to the set.
      for first = 1, #entering, {_SLICE} do
        local first_last = math.min(first + {_SLICE - 1}, #entering)
        for _, score in ipairs(call('ZMSCORE', geo_key, unpack(entering, first, first_last))) do
          if score then expected = expected - 1 end
        end
      end
    end
    if bulk('ZADD', geo_key, r.geo) ~= expected then
      -- A kept member was not there (pruned, or the region expired): time for everyone.
      for k = 1, #kept do
        local at = r.stamps * 2
        r.seen[at + 1], r.seen[at + 2] = f[r.kept_b[k] + 9], kept[k]
        r.stamps = r.stamps + 1
      end
    end
    if r.stamps > 0 then
      bulk('ZADD', seen_key, r.seen)
    end
    call('PEXPIRE', geo_key, region_ttl)
    call('PEXPIRE', seen_key, region_ttl)
  end
end
return table.concat(codes)
"""
)

#: Redis Cluster, step 1 of a fix: everything under the driver's hash tag.
#:
#: KEYS: driver state, trace. ARGV: recorded µs, latitude, longitude, region hex ("" = not
#: searchable), the fix's record, max speed (0 = none), jump slack, state TTL (ms), the step
#: of fix time (µs) that renews it.
#:
#: Returns {{0}} older, {{2}} implausible, or {{1, previous region ("" = none), previous µs}}:
#: the region step (:data:`REGION`) needs both to move the driver without racing a newer
#: writer.
DRIVER_RECORD: Final = (
    _TOO_FAR
    + f"""
local state = redis.call('GET', KEYS[1])
local traced = (not state or string.sub(state, {_FLAG}, {_FLAG}) == '1')
  and redis.call('EXISTS', KEYS[2]) == 1
if traced then
  redis.call('APPEND', KEYS[2], ARGV[5])
end
local us = tonumber(ARGV[1])
local previous_region, previous_us = '', 0
if state then
  local stored_us, stored_lat, stored_lon = struct.unpack('<i8dd', state)
  if stored_us >= us then
    return {{0}}
  end
  local max_speed = tonumber(ARGV[6])
  if max_speed > 0 and too_far(stored_lat, stored_lon, tonumber(ARGV[2]), tonumber(ARGV[3]),
      (us - stored_us) / 1000000, max_speed, tonumber(ARGV[7])) then
    return {{2}}
  end
  previous_region, previous_us = string.sub(state, {_REGION}), stored_us
end
redis.call('SET', KEYS[1], ARGV[5] .. (traced and '1' or '0') .. ARGV[4], 'KEEPTTL')
local renew_us = tonumber(ARGV[9])
if not state or math.floor(us / renew_us) ~= math.floor(previous_us / renew_us) then
  redis.call('PEXPIRE', KEYS[1], ARGV[8])
end
return {{1, previous_region, previous_us}}
"""
)

#: Redis Cluster, step 2: one region's share of a batch, under the region's hash tag.
#:
#: KEYS: geo, seen. ARGV: prune bound, prune limit, region TTL (ms), number of removals,
#: then (driver id, µs) per removal, then (driver id, GEO score, µs) per addition.
#:
#: Both kinds compare with the member's time in ``seen`` so that a writer delayed between
#: its driver step and this one can neither take a newer position out of a region nor put
#: an older one back: a removal applies only to the position it saw leave (or an older
#: one), an addition only if it is newer than what the region holds. A member left behind
#: is ignored by search (the driver's state names another region) and pruned once stale.
REGION: Final = """
local geo_key, seen_key = KEYS[1], KEYS[2]
local i = 5
for _ = 1, tonumber(ARGV[4]) do
  local id, ms = ARGV[i], tonumber(ARGV[i + 1]) / 1000
  i = i + 2
  local score = redis.call('ZSCORE', seen_key, id)
  if score and tonumber(score) <= ms then
    redis.call('ZREM', geo_key, id)
    redis.call('ZREM', seen_key, id)
  end
end
if i <= #ARGV then
  local stale = redis.call('ZRANGEBYSCORE', seen_key, '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
  for _, id in ipairs(stale) do
    redis.call('ZREM', geo_key, id)
    redis.call('ZREM', seen_key, id)
  end
  while i <= #ARGV do
    local id, ms = ARGV[i], tonumber(ARGV[i + 2]) / 1000
    local score = redis.call('ZSCORE', seen_key, id)
    if not score or tonumber(score) < ms then
      redis.call('ZADD', geo_key, ARGV[i + 1], id)
      redis.call('ZADD', seen_key, ms, id)
    end
    i = i + 3
  end
  redis.call('PEXPIRE', geo_key, ARGV[3])
  redis.call('PEXPIRE', seen_key, ARGV[3])
end
return 0
"""

#: Append to the trace only while it is open (there is no APPENDX). KEYS: trace. ARGV: record.
TRACE_APPEND: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('APPEND', KEYS[1], ARGV[1])
end
return 0
"""

#: Open a trace (an empty string: it exists, so appends land), discarding an older one, and
#: flag the state. KEYS: driver state, trace. ARGV: trace TTL (s).
BEGIN_TRACE: Final = f"""
redis.call('SET', KEYS[2], '', 'EX', ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SETRANGE', KEYS[1], {_FLAG - 1}, '1')
end
return 0
"""

#: Read and delete the trace in one step, so that no point is lost between the two, and
#: clear the flag. KEYS: driver state, trace. Returns the records (false if none).
END_TRACE: Final = f"""
local records = redis.call('GETDEL', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SETRANGE', KEYS[1], {_FLAG - 1}, '0')
end
return records
"""

#: One Redis forget: drop the state and the region members it names, atomically.
#: KEYS: driver state. ARGV: key prefix + "loc:", driver id.
FORGET: Final = f"""
local state = redis.call('GET', KEYS[1])
if not state then
  return 0
end
redis.call('DEL', KEYS[1])
local hex = string.sub(state, {_REGION})
if hex ~= '' then
  redis.call('ZREM', ARGV[1] .. '{{' .. hex .. '}}:geo', ARGV[2])
  redis.call('ZREM', ARGV[1] .. '{{' .. hex .. '}}:seen', ARGV[2])
end
return 1
"""

#: Redis Cluster forget, step 1: drop the state; returns {{region, µs}} of the position it
#: held (or {{}} if none) for a :data:`REGION` removal.
DRIVER_FORGET: Final = f"""
local state = redis.call('GET', KEYS[1])
if not state then
  return {{}}
end
redis.call('DEL', KEYS[1])
return {{string.sub(state, {_REGION}), (struct.unpack('<i8', state))}}
"""
