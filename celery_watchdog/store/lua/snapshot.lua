-- snapshot.lua: a worker's main process reports itself and its active requests.
--
-- ARGV[1]  key prefix
-- ARGV[2]  worker hostname (e.g. celery@host)
-- ARGV[3]  JSON snapshot {pid, pool, concurrency, active: [{id, name, pid, args, kwargs,
--          started_age, cpu, ...}], ...}; "ts" is stamped here with the server clock
-- ARGV[4]  TTL in seconds (~3 snapshot intervals): an expired snapshot means the worker is gone
-- ARGV[5]  running TTL: keys of the active runs are kept alive while their worker reports them
-- ARGV[6]  "online" | "offline"
-- ARGV[7]  gap: seconds without any worker's snapshot after which the store itself was out
--          (frozen, down, full) rather than the workers: evidence is doubtful for a while
-- Keys ({p} = prefix):
--   {p}:worker:{hostname}  HASH {ts, data, state}   TTL ARGV[4] (offline: kept 1 day for display)
--   {p}:workers            ZSET hostname -> last seen; entries older than 1 day are trimmed
--   {p}:run:{runkey}, {p}:task:{id}, {p}:runs:{id}   EXPIRE refreshed for active runs
--   {p}:running, {p}:run:{runkey}, {p}:runs:{id}, {p}:host:{worker}, {p}:task:{id}
--                          a prefork child that has not reported a run it has been running
--                          for a while (its flusher thread starved: C code holding the GIL)
--                          gets one written here, from what the main process knows
--   {p}:pulse              STRING the server time of the last snapshot of any worker  TTL 1 day
--   {p}:outage             STRING the server time snapshots resumed after a gap       TTL 1 day
--                          (the monitor judges no run lost or stuck for a grace after it)
--   {p}:cpu:{hostname}     HASH "{task id}|{pid}" -> CPU % of the child running it, rewritten
--                          each snapshot, TTL ARGV[4]: the monitor reads the few it needs
-- Returns: the server time (seconds, as a string).

local p, host, data, ttl, running_ttl, state = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]),
  tonumber(ARGV[5]), ARGV[6]
local gap = tonumber(ARGV[7])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local stamp = string.format('%.6f', now)
-- Healthy workers snapshot every few seconds: silence from all of them longer than the gap
-- means nobody could write (a frozen or full Redis, a failover), not that everyone died.
-- (No pulse at all is a first start or a wiped store: the monitor reads that silence itself.)
local pulse = tonumber(redis.call('GET', p .. ':pulse') or '')
if gap and pulse and now - pulse > gap then
  redis.call('SET', p .. ':outage', stamp, 'EX', 86400)
end
redis.call('SET', p .. ':pulse', stamp, 'EX', 86400)
local wk = p .. ':worker:' .. host
redis.call('HSET', wk, 'ts', stamp, 'data', data, 'state', state)
if state == 'offline' then
  redis.call('EXPIRE', wk, 86400)
else
  redis.call('EXPIRE', wk, math.ceil(ttl))
end
redis.call('ZADD', p .. ':workers', now, host)
redis.call('ZREMRANGEBYSCORE', p .. ':workers', '-inf', now - 86400)
local snap = cjson.decode(data)
local function given(v) return v ~= nil and v ~= cjson.null end
local ck = p .. ':cpu:' .. host
redis.call('DEL', ck)
for _, r in ipairs(snap.active) do
  if given(r.pid) and given(r.cpu_pct) then
    redis.call('HSET', ck, r.id .. '|' .. r.pid, string.format('%.1f', r.cpu_pct))
  end
end
redis.call('EXPIRE', ck, math.ceil(ttl))
for _, r in ipairs(snap.active) do
  if given(r.pid) then
    local runkey = r.id .. '|' .. host .. '|' .. r.pid
    local rk = p .. ':run:' .. runkey
    if r.track and redis.call('EXISTS', rk) == 0 then
      local tk = p .. ':task:' .. r.id
      local started = now - r.started_age
      local state = redis.call('HGET', tk, 'state')
      local last_start = tonumber(redis.call('HGET', tk, 'started') or '') or 0
      local ended = (state == 'SUCCESS' or state == 'FAILURE' or state == 'REVOKED')
        and last_start >= started - 1
      if not ended then
        redis.call('HSET', rk, 'task_id', r.id, 'name', r.name, 'worker', host, 'pid', r.pid,
          'slot', tostring(r.pid), 'watched', tostring(r.watched), 'started', started,
          'last_progress', started, 'reported_by', 'main')
        redis.call('SADD', p .. ':runs:' .. r.id, runkey)
        redis.call('SADD', p .. ':host:' .. host, runkey)
        redis.call('ZADD', p .. ':running', 'NX', started + r.deadline_after, runkey)
        redis.call('HSET', tk, 'name', r.name, 'state', 'STARTED', 'started', started,
          'worker', host, 'uuid', r.id)
        redis.call('HSETNX', tk, 'deliveries', 1)
      end
    end
    redis.call('EXPIRE', rk, running_ttl)
    redis.call('EXPIRE', p .. ':host:' .. host, running_ttl)
  end
  redis.call('EXPIRE', p .. ':task:' .. r.id, running_ttl)
  redis.call('EXPIRE', p .. ':runs:' .. r.id, running_ttl)
end
return stamp
