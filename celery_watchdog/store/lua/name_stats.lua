-- name_stats.lua: per task name, the last hour's and the last day's counts, summed here, and
-- its name hash: one reply per name instead of 37 (status, /metrics and the page read 500);
-- closed buckets only when asked, as the caller keeps them while they stay closed.
--
-- KEYS: none (keys derive from ARGV[1], the prefix, as in flush.lua)
-- ARGV[1] prefix; ARGV[2] the current 5-minute bucket; ARGV[3] the current hour; ARGV[4] "1"
-- to read the closed 5-minute buckets too; ARGV[5] "1" to read the closed hours too; ARGV[6..]
-- names
-- Returns: one JSON document per name: [{the last two 5-minute buckets' counts}, {the 10
-- before them, or {}}, {this hour's and the previous one's counts, with their runtime
-- histogram "h{b}"}, {the 22 hours before those, or {}}, [name hash as field, value, ...]].
-- Closed buckets no longer change (runs are flushed within seconds): the caller keeps them.

local p, b5, b1h = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local with_5m, with_1h = ARGV[4] == '1', ARGV[5] == '1'
local out = {}

local function add(total, key)
  local kv = redis.call('HGETALL', key)
  for j = 1, #kv, 2 do total[kv[j]] = (total[kv[j]] or 0) + (tonumber(kv[j + 1]) or 0) end
end

for i = 6, #ARGV do
  local name = ARGV[i]
  local m_recent, m_closed, h_recent, h_closed = {}, {}, {}, {}
  for b = b5 - 1, b5 do add(m_recent, p .. ':s5:' .. name .. ':' .. b) end
  if with_5m then for b = b5 - 11, b5 - 2 do add(m_closed, p .. ':s5:' .. name .. ':' .. b) end end
  for b = b1h - 1, b1h do add(h_recent, p .. ':s1h:' .. name .. ':' .. b) end
  if with_1h then for b = b1h - 23, b1h - 2 do add(h_closed, p .. ':s1h:' .. name .. ':' .. b) end end
  -- never an empty table: cjson would make it an array
  m_recent['_'], m_closed['_'], h_recent['_'], h_closed['_'] = 0, 0, 0, 0
  out[#out + 1] = cjson.encode({m_recent, m_closed, h_recent, h_closed,
                                redis.call('HGETALL', p .. ':name:' .. name)})
end
return out
