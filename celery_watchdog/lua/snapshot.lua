-- snapshot.lua: a worker's main process reports itself and its active requests.
--
-- ARGV[1]  key prefix
-- ARGV[2]  worker hostname (e.g. celery@host)
-- ARGV[3]  JSON snapshot {pid, pool, concurrency, active: [{id, name, pid, args, kwargs,
--          started_age, cpu, ...}], ...}; "ts" is stamped here with the server clock
-- ARGV[4]  TTL in seconds (~3 snapshot intervals): an expired snapshot means the worker is gone
-- ARGV[5]  running TTL: keys of the active runs are kept alive while their worker reports them
-- ARGV[6]  "online" | "offline"
-- Keys ({p} = prefix):
--   {p}:worker:{hostname}  HASH {ts, data, state}   TTL ARGV[4] (offline: kept 1 day for display)
--   {p}:workers            ZSET hostname -> last seen; entries older than 1 day are trimmed
--   {p}:run:{runkey}, {p}:task:{id}, {p}:runs:{id}   EXPIRE refreshed for active runs
-- Returns: the server time (seconds, as a string).

local p, host, data, ttl, running_ttl, state = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]),
  tonumber(ARGV[5]), ARGV[6]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local wk = p .. ':worker:' .. host
redis.call('HSET', wk, 'ts', string.format('%.6f', now), 'data', data, 'state', state)
if state == 'offline' then
  redis.call('EXPIRE', wk, 86400)
else
  redis.call('EXPIRE', wk, math.ceil(ttl))
end
redis.call('ZADD', p .. ':workers', now, host)
redis.call('ZREMRANGEBYSCORE', p .. ':workers', '-inf', now - 86400)
local snap = cjson.decode(data)
for _, r in ipairs(snap.active) do
  if r.pid ~= cjson.null and r.pid ~= nil then
    redis.call('EXPIRE', p .. ':run:' .. r.id .. '|' .. host .. '|' .. r.pid, running_ttl)
  end
  redis.call('EXPIRE', p .. ':task:' .. r.id, running_ttl)
  redis.call('EXPIRE', p .. ':runs:' .. r.id, running_ttl)
end
return string.format('%.6f', now)
