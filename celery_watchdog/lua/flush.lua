-- flush.lua: apply one write-behind batch from a process's recorder, atomically.
--
-- KEYS: none (every key is derived from ARGV[1], the prefix; all live in one Redis, no cluster)
-- ARGV[1]  key prefix, e.g. "watchdog"
-- ARGV[2]  JSON batch: {"cfg": {running_ttl, retention, max_finished, names_max},
--                       "events": [...], "live": [task ids whose cancel flag we want]}
-- Keys touched ({p} = prefix):
--   {p}:task:{id}          HASH  Flower-shaped task document     TTL running_ttl, then retention
--   {p}:run:{runkey}       HASH  one execution (id|host|slot)    TTL running_ttl, deleted at end
--                                (slot: the pid, plus ".thread" when a threads pool runs it)
--   {p}:runs:{id}          SET   runkeys of an id now running    TTL running_ttl
--   {p}:running            ZSET  runkey -> deadline (suspect-at) members removed at end
--   {p}:finished           ZSET  id -> finish time               capped by retention/max_finished
--   {p}:names              ZSET  task name -> last seen          capped at names_max
--   {p}:name:{name}        HASH  last success/failure/error      TTL 7 days
--   {p}:s5:{name}:{bucket} HASH  outcome counts per 5 minutes    TTL 65 minutes
--   {p}:s1h:{name}:{bucket} HASH outcome counts per hour         TTL 25 hours
--   {p}:rt:{name}          LIST  last 1000 runtimes (ms)         TTL 7 days, capped
--   {p}:cancel:{id}        STRING cancel flag (read only here)
-- Returns: list of task ids in "live" whose cancel flag is set.
-- Every timestamp is the Redis server clock minus the event's age (seconds, measured with the
-- recording process's monotonic clock), so hosts never compare their own clocks.

local p = ARGV[1]
local batch = cjson.decode(ARGV[2])
local cfg = batch.cfg
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local WEEK = 604800

local function at(age) if age == nil or age == cjson.null then return nil end return now - age end
local function given(v) return v ~= nil and v ~= cjson.null end

local function hset_given(key, fields)
  local args = {}
  for k, v in pairs(fields) do
    if given(v) then args[#args + 1] = k; args[#args + 1] = tostring(v) end
  end
  if #args > 0 then redis.call('HSET', key, unpack(args)) end
end

local function count(name, outcome, ts, runtime)
  local b5 = math.floor(ts / 300)
  local b1h = math.floor(ts / 3600)
  local k5 = p .. ':s5:' .. name .. ':' .. b5
  local k1h = p .. ':s1h:' .. name .. ':' .. b1h
  redis.call('HINCRBY', k5, outcome, 1); redis.call('EXPIRE', k5, 3900)
  redis.call('HINCRBY', k1h, outcome, 1); redis.call('EXPIRE', k1h, 90000)
  local nk = p .. ':name:' .. name
  if outcome == 'succeeded' then
    redis.call('HSET', nk, 'last_success', ts)
  elseif outcome == 'failed' or outcome == 'lost' then
    redis.call('HSET', nk, 'last_failure', ts)
  end
  redis.call('EXPIRE', nk, WEEK)
  if given(runtime) and (outcome == 'succeeded' or outcome == 'failed') then
    local rk = p .. ':rt:' .. name
    redis.call('LPUSH', rk, string.format('%.1f', runtime * 1000))
    redis.call('LTRIM', rk, 0, 999)
    redis.call('EXPIRE', rk, WEEK)
  end
end

local names_seen = {}

for _, e in ipairs(batch.events) do
  local tk = p .. ':task:' .. e.id
  if e.kind == 'recv' then
    local state = redis.call('HGET', tk, 'state')
    local fields = {name = e.name, args = e.args, kwargs = e.kwargs, queue = e.queue,
                    eta = e.eta, expires = e.expires, retries = e.retries, root_id = e.root_id,
                    parent_id = e.parent_id, received = at(e.age), worker = e.worker,
                    uuid = e.id}
    if state ~= 'STARTED' then fields.state = 'RECEIVED' end
    hset_given(tk, fields)
    redis.call('HINCRBY', tk, 'deliveries', 1)
    redis.call('EXPIRE', tk, cfg.running_ttl)
    names_seen[e.name] = now
  elseif e.kind == 'run' then
    local runkey = e.id .. '|' .. e.worker .. '|' .. (e.slot or e.pid)
    local rk = p .. ':run:' .. runkey
    local started = at(e.started_age)
    local progress = at(e.progress_age) or started
    hset_given(rk, {task_id = e.id, name = e.name, worker = e.worker, pid = e.pid, slot = e.slot,
                    watched = e.watched, started = started, last_heartbeat = at(e.hb_age),
                    last_progress = progress, step = e.step, step_started = at(e.step_age),
                    step_timeout = e.step_timeout, processed = e.processed, total = e.total,
                    details = e.details})
    if e.step == cjson.null then redis.call('HDEL', rk, 'step', 'step_started', 'step_timeout') end
    redis.call('EXPIRE', rk, cfg.running_ttl)
    if e.new then
      hset_given(tk, {name = e.name, state = 'STARTED', started = started, worker = e.worker,
                      uuid = e.id, args = e.args, kwargs = e.kwargs})
      redis.call('HDEL', tk, 'succeeded', 'failed', 'retried', 'revoked', 'exception',
                 'traceback', 'result', 'runtime')
      redis.call('SADD', p .. ':runs:' .. e.id, runkey)
      redis.call('EXPIRE', p .. ':runs:' .. e.id, cfg.running_ttl)
    end
    redis.call('EXPIRE', tk, cfg.running_ttl)
    redis.call('ZADD', p .. ':running', progress + e.timeout, runkey)
    names_seen[e.name] = now
  elseif e.kind == 'end' then
    -- pid "*" comes from a worker's main process (hard time limit, lost child, revoke), which
    -- does not know the child pid: it ends every open run of this id on that host.
    local runkeys = {}
    if e.pid == '*' then
      local head = e.id .. '|' .. e.worker .. '|'
      for _, rk in ipairs(redis.call('SMEMBERS', p .. ':runs:' .. e.id)) do
        if string.sub(rk, 1, #head) == head then runkeys[#runkeys + 1] = rk end
      end
    else
      runkeys[1] = e.id .. '|' .. e.worker .. '|' .. (e.slot or e.pid)
    end
    local state = redis.call('HGET', tk, 'state')
    local deliveries = redis.call('HGET', tk, 'deliveries') or '0'
    local mark = e.id .. '|' .. e.worker .. '|' .. (e.slot or e.pid) .. '#' .. deliveries
    -- A child's own ends differ by outcome (a retry and the next delivery's success may both
    -- be flushed after that delivery was counted); a main process's ends are the same end.
    if e.pid ~= '*' then mark = mark .. '#' .. e.outcome end
    -- A hard time limit fires task_failure twice: record each delivery's end once. A main
    -- process reporting for a child that already recorded its own end adds nothing.
    local skip = redis.call('HGET', tk, 'ended') == mark
    if e.pid == '*' and #runkeys == 0 and (state == 'SUCCESS' or state == 'FAILURE'
        or state == 'REVOKED') then skip = true end
    if not skip then
      local ts = at(e.age)
      local last = {}
      for _, rk in ipairs(runkeys) do
        local r = redis.call('HMGET', p .. ':run:' .. rk, 'step', 'processed', 'total', 'started')
        if r[1] or r[2] then last = r end
        redis.call('DEL', p .. ':run:' .. rk)
        redis.call('ZREM', p .. ':running', rk)
        redis.call('SREM', p .. ':runs:' .. e.id, rk)
      end
      local fields = {name = e.name, state = e.state, worker = e.worker, uuid = e.id,
                      runtime = e.runtime, exception = e.exception, traceback = e.traceback,
                      result = e.result, ended = mark, outcome = e.outcome,
                      step = e.step or last[1], processed = e.processed or last[2],
                      total = e.total or last[3], args = e.args, kwargs = e.kwargs}
      fields[e.outcome == 'lost' and 'failed' or e.outcome] = ts
      if given(e.started_age) then fields.started = at(e.started_age) end
      if not given(e.runtime) then
        local started = tonumber(last[4] or redis.call('HGET', tk, 'started'))
        if started then fields.runtime = ts - started end
      end
      hset_given(tk, fields)
      redis.call('EXPIRE', tk, cfg.retention)
      if e.outcome ~= 'retried' then redis.call('ZADD', p .. ':finished', ts, e.id) end
      count(e.name, e.outcome, ts, fields.runtime)
      if given(e.exception) and (e.outcome == 'failed' or e.outcome == 'lost') then
        redis.call('HSET', p .. ':name:' .. e.name, 'last_error', e.exception)
      end
      names_seen[e.name] = now
    end
  end
end

for name, ts in pairs(names_seen) do redis.call('ZADD', p .. ':names', ts, name) end

-- Bound memory whatever the throughput: finished runs by age and by count, names by count.
local fk = p .. ':finished'
local function drop(ids)
  for _, id in ipairs(ids) do redis.call('DEL', p .. ':task:' .. id) end
end
local old = redis.call('ZRANGEBYSCORE', fk, '-inf', now - cfg.retention, 'LIMIT', 0, 1000)
if #old > 0 then drop(old); redis.call('ZREM', fk, unpack(old)) end
local excess = redis.call('ZCARD', fk) - cfg.max_finished
if excess > 0 then
  local ids = redis.call('ZRANGE', fk, 0, math.min(excess, 1000) - 1)
  drop(ids); redis.call('ZREM', fk, unpack(ids))
end
local nexcess = redis.call('ZCARD', p .. ':names') - cfg.names_max
if nexcess > 0 then redis.call('ZREMRANGEBYRANK', p .. ':names', 0, nexcess - 1) end

local cancelled = {}
for _, id in ipairs(batch.live) do
  if redis.call('EXISTS', p .. ':cancel:' .. id) == 1 then cancelled[#cancelled + 1] = id end
end
return cancelled
