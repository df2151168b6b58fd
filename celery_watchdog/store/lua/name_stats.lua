-- name_stats.lua: per task name, the last hour's and the last day's counts, summed here, and
-- its name hash: one reply per name instead of 37 (status, /metrics and the page read 500).
--
-- KEYS: none (keys derive from ARGV[1], the prefix, as in flush.lua)
-- ARGV[1] prefix; ARGV[2] the current 5-minute bucket; ARGV[3] the current hour; ARGV[4..] names
-- Returns: one JSON document per name: [{last hour's counts}, {last day's counts, with the
-- day's runtime histogram "h{b}"}, [name hash as field, value, ...]]

local p, b5, b1h = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}

local function add(total, key)
  local kv = redis.call('HGETALL', key)
  for j = 1, #kv, 2 do total[kv[j]] = (total[kv[j]] or 0) + (tonumber(kv[j + 1]) or 0) end
end

for i = 4, #ARGV do
  local name = ARGV[i]
  local hour, day = {}, {}
  for b = b5 - 11, b5 do add(hour, p .. ':s5:' .. name .. ':' .. b) end
  for b = b1h - 23, b1h do add(day, p .. ':s1h:' .. name .. ':' .. b) end
  hour['_'], day['_'] = 0, 0  -- never an empty table: cjson would make it an array
  out[#out + 1] = cjson.encode({hour, day, redis.call('HGETALL', p .. ':name:' .. name)})
end
return out
