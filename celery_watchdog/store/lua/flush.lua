-- flush.lua: apply one write-behind batch from a process's recorder, atomically.
--
-- KEYS: none (every key is derived from ARGV[1], the prefix; all live in one Redis, no cluster)
-- ARGV[1]  key prefix, e.g. "watchdog"
-- ARGV[2]  JSON batch: {"cfg": {running_ttl, retention, max_finished, names_max, window},
--                       "events": [...], "live": [task ids whose cancel flag we want]}
-- Keys touched ({p} = prefix):
--   {p}:task:{id}          HASH  Flower-shaped task document     TTL running_ttl, then retention
--                                (also: the run's last cursor, a retry chain's first error)
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
--   {p}:msg:{id}           STRING original message of a long run (deleted when its runs end,
--                                 kept 1 day after a lost or revoked end: the monitor reads it)
--   {p}:faults:{worker}:{b} HASH  the watchdog's own errors by kind per 5 minutes TTL 65 min
--   {p}:faultlast:{worker} HASH  kind -> JSON {at, text, pid} of the last one   TTL 1 day
--   {p}:faulty             ZSET  worker -> last error report; entries older than 1 day trimmed
--   {p}:host:{worker}      SET   runkeys open on one worker       TTL running_ttl
--   {p}:budgets            HASH  task name -> "soft,hard" learned by the monitor (read only)
--   {p}:lost               ZSET  runkey -> ended-as-lost at; the monitor pops it (capped)
--   {p}:lostinfo           HASH  runkey -> JSON facts of that lost run (removed with it)
--   {p}:beat:sent          HASH  task name -> JSON {at, id} of beat's last dispatch TTL 30 days
--   {p}:pub:{queue}        ZSET  task id (+ "\t" + its alert_context JSON) -> when published
--                                (RabbitMQ brokers); TTL 1 day, capped
--   {p}:pubqueues          SET   the queues those publishes went to              TTL 1 day
--   {p}:nameq              HASH  task name -> the routing key its runs came from   TTL 7 days
--   {p}:qc:{queue}:{b}     HASH  "done" -> runs from this queue that ended per 5 min TTL 65 min
--   {p}:qlast              HASH  queue -> when a run from it last ended          TTL 7 days
--   {p}:failing            ZSET  task name -> failures in a row since its last success (> 0)
--   {p}:gaveup             ZSET  task name -> when a run of it last exhausted its retries
--   {p}:failnames          ZSET  task name -> its last failure or retry (trimmed after 1 day)
--   {p}:failctx:{name}     ZSET  alert_context JSON of failed runs -> when   TTL 1 day, capped
--   {p}:s1h:...            (also: "h{b}" runtimes per bucket b, for the hour's p95)
--   {p}:tot:{name}         HASH  outcome -> runs, "h{b}" -> runtimes in bucket b, since the
--                                first run (never decremented: /metrics' counters) TTL 30 days
--   {p}:hw:{name}:{week}   STRING 168 cells (one per hour of the week, 0 = Monday 00:00 UTC)
--                                of 12 bytes: runs u32, failures u24, retries u24, runtime
--                                p95 bucket u16 (BITFIELD, saturating); kept 4 weeks past its own
--   {p}:qwk:{queue}:{week} HASH  (also: "{hour of week}:d" runs from the queue that ended)
--   {p}:rwk:{name}:{week}  HASH  reason bucket -> failures that week          TTL 36 days
--   {p}:fp:{fp}            HASH  one input's deterministic failures {name, label, reason,
--                                error, at}                            TTL window (cfg.window)
--   {p}:fp:{fp}:ids        SET   task ids it failed as (a producer re-sending it) TTL window
--   {p}:quarantine         HASH  fp -> JSON {name, label, reason, error, at, failures}: inputs
--                                that fail deterministically; parked until released
--   {p}:quarantined        ZSET  fp -> when quarantined: the index (capped at 10000, oldest
--                                released), and what the monitor alerts about
--   {p}:quarantine:byname  HASH  task name -> failures of its quarantined inputs
-- Returns: {task ids in "live" whose cancel flag is set, "index: error" of each event rejected}.
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

-- Per-name statistics are summed over the batch and written once per key: the script's cost
-- follows the number of task names in a batch, not the number of tasks.
local counts, last, runtimes = {}, {}, {}  -- per task name, for this batch
-- Runtimes per task name and hour in log buckets (10 % wide): each hour's p95, kept per hour of
-- the week, is what "normal for this hour" compares a runtime with.
local hist = {}  -- "name\0hour" -> {bucket -> runs}
local LOG_STEP = math.log(1.1)
local function timed(name, ts, runtime, weight)
  local secs = tonumber(runtime)
  if secs == nil or secs ~= secs or secs < 0 or secs > 1e9 then return end  -- NaN, < 0, absurd
  local b = math.floor(math.log(secs * 1000 + 1) / LOG_STEP)
  local key = name .. '\0' .. math.floor(ts / 3600)
  local h = hist[key] or {}
  h[b] = (h[b] or 0) + weight
  hist[key] = h
end
local streaks = {}  -- per task name: {reset = a success came, add = failures after it}
local queue_of = {}  -- per task name: the routing key of its runs in this batch
local function streak(name, outcome)
  local s = streaks[name] or {reset = false, add = 0}
  if outcome == 'succeeded' then s.reset, s.add = true, 0
  elseif outcome == 'failed' then s.add = s.add + 1 end
  streaks[name] = s
end
local function count(name, outcome, ts, runtime, delta)
  local key = name .. '\0' .. outcome .. '\0' .. math.floor(ts / 300) .. '\0' .. math.floor(ts / 3600)
  counts[key] = (counts[key] or 0) + (delta or 1)
  if delta then return end
  local l = last[name] or {}
  streak(name, outcome)
  if outcome == 'succeeded' then l.last_success = math.max(l.last_success or 0, ts) end
  if outcome == 'failed' or outcome == 'lost' then l.last_failure = math.max(l.last_failure or 0, ts) end
  last[name] = l
  if given(runtime) and (outcome == 'succeeded' or outcome == 'failed') then
    local rts = runtimes[name] or {}
    rts[#rts + 1] = string.format('%.1f', runtime * 1000)
    runtimes[name] = rts
    timed(name, ts, runtime, 1)
  end
end

-- The week's cells of a task name, made whole at once (growing a string piece by piece would
-- leave Redis twice the room), expiring 4 weeks after the week ends.
local CELLS = 168 * 12
local made = {}  -- week keys known to exist in this batch: checked once each
local function week_cells(name, hours)
  local week = math.floor(hours / 168)
  local wk = p .. ':hw:' .. name .. ':' .. week
  if not made[wk] then
    made[wk] = true
    if redis.call('EXISTS', wk) == 0 then
      redis.call('SET', wk, string.rep('\0', CELLS))
      redis.call('EXPIREAT', wk, (week + 5) * WEEK - 72 * 3600 + 7200)
    end
  end
  return wk
end

-- Each hour's runtime p95 bucket from its histogram (kept beside the hour's counts).
local function write_runtimes()
  for key, h in pairs(hist) do
    local name, hour = string.match(key, '^(.*)%z(.*)$')
    local k1h = p .. ':s1h:' .. name .. ':' .. hour
    local tk = p .. ':tot:' .. name
    for b, c in pairs(h) do
      redis.call('HINCRBY', k1h, 'h' .. b, c)
      redis.call('HINCRBY', tk, 'h' .. b, c)  -- the runtime histogram since the first run
    end
    redis.call('EXPIRE', k1h, 90000); redis.call('EXPIRE', tk, 30 * 86400)
    local all, total = redis.call('HGETALL', k1h), 0
    local buckets = {}
    for i = 1, #all, 2 do
      local b = tonumber(string.match(all[i], '^h(%d+)$'))
      if b then buckets[#buckets + 1] = {b, tonumber(all[i + 1])}; total = total + buckets[#buckets][2] end
    end
    table.sort(buckets, function(x, y) return x[1] < y[1] end)
    local want, seen, p95 = math.ceil(total * 0.95), 0, 0
    for _, bc in ipairs(buckets) do
      seen = seen + bc[2]
      if seen >= want then p95 = bc[1]; break end
    end
    local hours = tonumber(hour) + 72
    -- Stored as bucket + 1: 0 means no runtime recorded in that hour.
    redis.call('BITFIELD', week_cells(name, hours), 'SET', 'u16', (hours % 168) * 96 + 80,
               math.min(p95 + 1, 65535))
  end
end

local function write_counts()
  for key, n in pairs(counts) do
    local name, outcome, b5, b1h = string.match(key, '^(.*)%z(.*)%z(.*)%z(.*)$')
    local k5, k1h = p .. ':s5:' .. name .. ':' .. b5, p .. ':s1h:' .. name .. ':' .. b1h
    redis.call('HINCRBY', k5, outcome, n); redis.call('EXPIRE', k5, 3900)
    redis.call('HINCRBY', k1h, outcome, n); redis.call('EXPIRE', k1h, 90000)
    if n > 0 and string.sub(outcome, 1, 2) ~= 'r:' then
      -- Totals since the first run: Prometheus counters (a correction never takes one back).
      local tk = p .. ':tot:' .. name
      redis.call('HINCRBY', tk, outcome, n); redis.call('EXPIRE', tk, 30 * 86400)
    end
    local hours = tonumber(b1h) + 72  -- the epoch was a Thursday
    local how = hours % 168
    if outcome == 'succeeded' or outcome == 'failed' or outcome == 'lost' then
      -- Runs and failures per hour of the week, a key per week: what is normal for this
      -- hour (the failure spike rule, status), and the weekly report's trends.
      local wk = week_cells(name, hours)
      redis.call('BITFIELD', wk, 'OVERFLOW', 'SAT', 'INCRBY', 'u32', how * 96, n)
      if outcome ~= 'succeeded' then
        redis.call('BITFIELD', wk, 'OVERFLOW', 'SAT', 'INCRBY', 'u24', how * 96 + 32, n)
      end
    elseif outcome == 'retried' then
      redis.call('BITFIELD', week_cells(name, hours), 'OVERFLOW', 'SAT', 'INCRBY', 'u24',
                 how * 96 + 56, n)
    elseif string.sub(outcome, 1, 2) == 'r:' then
      -- Failures per reason per week: which reasons are new this week.
      local rk = p .. ':rwk:' .. name .. ':' .. math.floor(hours / 168)
      redis.call('HINCRBY', rk, string.sub(outcome, 3), n)
      redis.call('EXPIRE', rk, 36 * 86400)
    end
  end
  for name, l in pairs(last) do
    local nk = p .. ':name:' .. name
    if l.last_success then redis.call('HSET', nk, 'last_success', l.last_success) end
    if l.last_failure then redis.call('HSET', nk, 'last_failure', l.last_failure) end
    if l.last_error then redis.call('HSET', nk, 'last_error', l.last_error) end
    for reason, text in pairs(l.examples or {}) do redis.call('HSET', nk, 'ex:' .. reason, text) end
    redis.call('EXPIRE', nk, WEEK)
  end
  -- Completions per queue, for telling a slow queue (completions go on) from a stalled one.
  local done_by_queue, done_at = {}, {}
  for key, n in pairs(counts) do
    local name, outcome, b5 = string.match(key, '^(.*)%z(.*)%z(.*)%z')
    if outcome == 'succeeded' or outcome == 'failed' then
      local q = queue_of[name]
      if q == nil then
        q = redis.call('HGET', p .. ':nameq', name) or false
        queue_of[name] = q
      end
      if q then
        local dk = q .. '\0' .. b5
        done_by_queue[dk] = (done_by_queue[dk] or 0) + n
        local l = last[name] or {}
        done_at[q] = math.max(done_at[q] or 0, l.last_success or 0, l.last_failure or 0)
      end
    end
  end
  for dk, n in pairs(done_by_queue) do
    local q, b5 = string.match(dk, '^(.*)%z(.*)$')
    local qk = p .. ':qc:' .. q .. ':' .. b5
    redis.call('HINCRBY', qk, 'done', n); redis.call('EXPIRE', qk, 3900)
    local hours = math.floor(tonumber(b5) / 12) + 72  -- completions per hour of the week
    local wk = p .. ':qwk:' .. q .. ':' .. math.floor(hours / 168)
    redis.call('HINCRBY', wk, (hours % 168) .. ':d', n); redis.call('EXPIRE', wk, 36 * 86400)
  end
  for q, ts in pairs(done_at) do  -- when the last run ended, not when it was flushed
    local prev = tonumber(redis.call('HGET', p .. ':qlast', q) or '') or 0
    if ts > prev then redis.call('HSET', p .. ':qlast', q, ts) end
  end
  redis.call('EXPIRE', p .. ':qlast', WEEK)
  for name, s in pairs(streaks) do
    local nk = p .. ':name:' .. name
    local n = s.add
    if s.reset then redis.call('HSET', nk, 'streak', n)
    elseif n > 0 then n = redis.call('HINCRBY', nk, 'streak', n) end
    if n > 0 then redis.call('ZADD', p .. ':failing', n, name)
    elseif s.reset then redis.call('ZREM', p .. ':failing', name) end
  end
  for name, rts in pairs(runtimes) do
    local rk = p .. ':rt:' .. name
    for i = 1, #rts, 500 do
      redis.call('LPUSH', rk, unpack(rts, i, math.min(i + 499, #rts)))
    end
    redis.call('LTRIM', rk, 0, 999)
    redis.call('EXPIRE', rk, WEEK)
  end
end

-- What the task document says about its message, given by the first event of a run.
local function message_fields(e)
  return {queue = e.queue, eta = e.eta, expires = e.expires, retries = e.retries,
          root_id = e.root_id, parent_id = e.parent_id, args = e.args, kwargs = e.kwargs,
          context = e.context}
end

local names_seen = {}

-- What a failed (or retried, or lost) run leaves beyond its counts: the first error of its
-- retry chain, the accounts it hit, a chain that gave up, and a deterministic failure's input.
local function failure(e, tk, ts, reason)
  -- The earliest error, whatever order the ends arrive in (a retry's end can be flushed
  -- after the next attempt's, when that one ran on another thread or host).
  local first_at = tonumber(redis.call('HGET', tk, 'first_error_at') or '')
  if given(e.exception) and (first_at == nil or ts < first_at) then
    redis.call('HSET', tk, 'first_error', e.exception, 'first_error_at', ts,
               'first_reason', reason or 'other')
  end
  redis.call('ZADD', p .. ':failnames', ts, e.name)
  if e.outcome ~= 'failed' then return end
  local ctx = redis.call('HGET', tk, 'context')
  if ctx and ctx ~= '' and ctx ~= '{}' then
    local ck = p .. ':failctx:' .. e.name
    redis.call('ZADD', ck, ts, ctx)
    redis.call('ZREMRANGEBYRANK', ck, 0, -1001)
    redis.call('EXPIRE', ck, 86400)
  end
  if e.exhausted == true then
    redis.call('HSET', p .. ':name:' .. e.name, 'gaveup_at', ts, 'gaveup_id', e.id,
               'gaveup_retries', e.retries or 0)
    redis.call('ZADD', p .. ':gaveup', ts, e.name)
  end
  if given(e.fp) then
    local fk = p .. ':fp:' .. e.fp
    redis.call('SADD', fk .. ':ids', e.id)
    redis.call('EXPIRE', fk .. ':ids', cfg.window)
    hset_given(fk, {name = e.name, label = e.fp_label, reason = reason,
                    error = given(e.exception) and string.sub(e.exception, 1, 300) or nil, at = ts})
    redis.call('EXPIRE', fk, cfg.window)
    local n = redis.call('SCARD', fk .. ':ids')
    local qk = p .. ':quarantine'
    if n >= (tonumber(e.q_after) or 3) and redis.call('HEXISTS', qk, e.fp) == 0 then
      redis.call('HSET', qk, e.fp, cjson.encode({name = e.name, label = e.fp_label,
        reason = reason, error = e.exception, at = ts, failures = n}))
      redis.call('ZADD', p .. ':quarantined', ts, e.fp)
      redis.call('HINCRBY', p .. ':quarantine:byname', e.name, n)
      redis.call('INCR', p .. ':quarantine:v')
    end
  end
end

local function apply(e)
  local tk = p .. ':task:' .. (e.id or '')  -- agg events have no id
  if e.name and given(e.queue) and not queue_of[e.name] then
    queue_of[e.name] = e.queue
    redis.call('HSET', p .. ':nameq', e.name, e.queue)
    redis.call('EXPIRE', p .. ':nameq', WEEK)
  end
  if e.kind == 'agg' then
    -- Short successful runs beyond the flush's sample of this name: counted, timed, no document.
    local ts = at(e.age)
    local key = e.name .. '\0' .. 'succeeded' .. '\0' .. math.floor(ts / 300) .. '\0'
      .. math.floor(ts / 3600)
    counts[key] = (counts[key] or 0) + e.n
    local l = last[e.name] or {}
    l.last_success = math.max(l.last_success or 0, ts)
    last[e.name] = l
    streak(e.name, 'succeeded')
    local rts = runtimes[e.name] or {}
    -- The sample stands for all e.n runs in the hour's histogram.
    local weight = math.max(1, math.floor(e.n / math.max(1, #e.runtimes) + 0.5))
    for _, r in ipairs(e.runtimes) do
      rts[#rts + 1] = string.format('%.1f', r * 1000)
      timed(e.name, ts, r, weight)
    end
    runtimes[e.name] = rts
    names_seen[e.name] = now
  elseif e.kind == 'faults' then
    -- The watchdog's own errors in one process: counts per 5 minutes, the last of each kind.
    local fk = p .. ':faults:' .. e.worker .. ':' .. math.floor(now / 300)
    local lk = p .. ':faultlast:' .. e.worker
    for kind, n in pairs(e.counts) do redis.call('HINCRBY', fk, kind, n) end
    redis.call('EXPIRE', fk, 3900)
    for kind, l in pairs(e.last) do
      redis.call('HSET', lk, kind, cjson.encode({at = at(l.age), text = l.text, pid = e.pid}))
    end
    redis.call('EXPIRE', lk, 86400)
    redis.call('ZADD', p .. ':faulty', now, e.worker)
    redis.call('ZREMRANGEBYSCORE', p .. ':faulty', '-inf', now - 86400)
  elseif e.kind == 'pub' then
    -- A publish to a broker whose waiting messages cannot be read (RabbitMQ): the queue's
    -- oldest age is read from these (see store/queues.py), capped, oldest dropped first.
    local qk = p .. ':pub:' .. e.queue
    -- "{id}\t{alert_context JSON}" when the message says who it is for: who waits, counted.
    local member = e.id
    if given(e.context) and type(e.context) == 'string' then member = e.id .. '\t' .. e.context end
    redis.call('ZADD', qk, 'NX', at(e.age), member)
    redis.call('EXPIRE', qk, 86400)
    redis.call('SADD', p .. ':pubqueues', e.queue)
    redis.call('EXPIRE', p .. ':pubqueues', 86400)
    local over = redis.call('ZCARD', qk) - 100000
    if over > 0 then redis.call('ZREMRANGEBYRANK', qk, 0, over - 1) end
  elseif e.kind == 'sent' then
    -- Beat sent a scheduled task (its own recorder): the dead-man's switch of its entries.
    redis.call('HSET', p .. ':beat:sent', e.name, cjson.encode({at = at(e.age), id = e.id}))
    redis.call('EXPIRE', p .. ':beat:sent', 30 * 86400)
  elseif e.kind == 'redeliv' then
    -- A worker's main process saw this message come back (a child or worker died, a
    -- visibility timeout): it was delivered at least once before.
    if redis.call('HSETNX', tk, 'deliveries', 2) == 0 then redis.call('HINCRBY', tk, 'deliveries', 1) end
    hset_given(tk, {name = e.name, uuid = e.id, received = at(e.age), worker = e.worker})
    redis.call('EXPIRE', tk, cfg.running_ttl)
  elseif e.kind == 'run' then
    local runkey = e.id .. '|' .. e.worker .. '|' .. (e.slot or e.pid)
    local rk = p .. ':run:' .. runkey
    local started = at(e.started_age)
    local progress = at(e.progress_age) or started
    hset_given(rk, {task_id = e.id, name = e.name, worker = e.worker, pid = e.pid, slot = e.slot,
                    watched = e.watched, started = started, last_heartbeat = at(e.hb_age),
                    last_progress = progress, step = e.step, step_started = at(e.step_age),
                    step_timeout = e.step_timeout, processed = e.processed, total = e.total,
                    details = e.details, stack = e.stack, stack_at = at(e.stack_age),
                    cursor = e.cursor, retries = e.new and (e.retries or 0) or nil})
    if e.step == cjson.null then redis.call('HDEL', rk, 'step', 'step_started', 'step_timeout') end
    redis.call('EXPIRE', rk, cfg.running_ttl)
    -- The score is when this run next becomes suspect (the earliest of its deadlines, sent as
    -- seconds from now); a budget learned from history by the monitor can bring it closer.
    local deadline = now + e.deadline_in
    -- A new run already past its learned soft budget is due now; later flushes only bring
    -- a deadline closer while that budget is still ahead (once judged, a run is not re-flagged
    -- every pass).
    local learned = redis.call('HGET', p .. ':budgets', e.name)
    if learned and started then
      local soft = tonumber(string.match(learned, '^([^,]+)'))
      if soft and started + soft < deadline and (e.new or started + soft > now) then
        deadline = started + soft
      end
    end
    -- The last cursor stays with the task document: the next attempt starts from it.
    if given(e.cursor) then redis.call('HSET', tk, 'cursor', e.cursor) end
    local duplicate = false
    if e.new then
      local fields = message_fields(e)
      fields.name, fields.state, fields.started, fields.worker, fields.uuid =
        e.name, 'STARTED', started, e.worker, e.id
      hset_given(tk, fields)
      redis.call('HSETNX', tk, 'deliveries', 1)
      redis.call('HDEL', tk, 'succeeded', 'failed', 'retried', 'revoked', 'exception',
                 'traceback', 'result', 'runtime', 'verdict', 'verdict_reason', 'reason')
      redis.call('SADD', p .. ':runs:' .. e.id, runkey)
      redis.call('EXPIRE', p .. ':runs:' .. e.id, cfg.running_ttl)
      redis.call('SADD', p .. ':host:' .. e.worker, runkey)
      redis.call('EXPIRE', p .. ':host:' .. e.worker, cfg.running_ttl)
    end
    -- The same id running twice at once (celery#5935): due now, for the monitor to judge,
    -- until it has (a later flush of either run must not push the verdict back).
    if redis.call('SCARD', p .. ':runs:' .. e.id) > 1 then
      duplicate = redis.call('EXISTS', p .. ':claim:duplicate:' .. e.id) == 0
    end
    redis.call('EXPIRE', tk, cfg.running_ttl)
    if duplicate then
      for _, other in ipairs(redis.call('SMEMBERS', p .. ':runs:' .. e.id)) do
        redis.call('ZADD', p .. ':running', now, other)
      end
    else
      redis.call('ZADD', p .. ':running', deadline, runkey)
    end
    names_seen[e.name] = now
  elseif e.kind == 'end' then
    -- Three sources end a run:
    --  * the child that ran it (pid = its pid): marks differ by outcome, since a retry and the
    --    next delivery's success may both be flushed after that delivery was counted;
    --  * the worker's main process, authoritative (pid "*": hard time limit, WorkerLostError,
    --    revoke): it does not know the child pid, so it ends every open run of this id on that
    --    host, and it replaces what the child recorded for this delivery (a SIGTERMed child may
    --    still report a success); a hard time limit fires task_failure twice: one mark, once;
    --  * the main process guessing (guess = true, pid = the dead child): a child found dead
    --    while it had this run, which adds nothing when the child recorded its own end.
    local base = e.id .. '|' .. e.worker .. '|'
    local runkeys = {}
    if e.pid == '*' then
      for _, rk in ipairs(redis.call('SMEMBERS', p .. ':runs:' .. e.id)) do
        if string.sub(rk, 1, #base) == base then runkeys[#runkeys + 1] = rk end
      end
    else
      runkeys[1] = base .. (e.slot or e.pid)
    end
    local state = redis.call('HGET', tk, 'state')
    if given(e.cursor) then redis.call('HSET', tk, 'cursor', e.cursor) end
    if e.first then redis.call('HSETNX', tk, 'deliveries', 1) end
    local deliveries = redis.call('HGET', tk, 'deliveries') or '0'
    local prev = redis.call('HGET', tk, 'ended')
    -- Marks name the end of one delivery (and retry) on one host; the host is hashed so the
    -- mark stays short enough for Redis's compact hash encoding (<= 64 bytes per value).
    local short = string.sub(redis.sha1hex(e.worker), 1, 8) .. '|'
    local main_mark = short .. '*#' .. deliveries
    local final = state == 'SUCCESS' or state == 'FAILURE' or state == 'REVOKED'
    local mark, skip, undo = main_mark, false, false
    if e.pid == '*' then
      skip = prev == mark
      undo = not skip and prev and string.sub(prev, 1, #short) == short
        and string.find(prev, '#' .. deliveries .. '.', 1, true) ~= nil
    else
      mark = short .. (e.slot or e.pid) .. '#' .. deliveries .. '.' .. (e.retries or 0) .. '#' .. e.outcome
      skip = prev == mark or prev == main_mark
      if e.guess and final and redis.call('EXISTS', p .. ':run:' .. runkeys[1]) == 0 then
        skip = true
      end
    end
    if undo then
      local old = redis.call('HGET', tk, 'outcome')
      local old_ts = old and tonumber(redis.call('HGET', tk, old == 'lost' and 'failed' or old) or '')
      if old_ts then count(e.name, old, old_ts, nil, -1) end
      redis.call('HDEL', tk, 'succeeded', 'result')
    end
    if not skip then
      local ts = at(e.age)
      local reason = given(e.reason) and e.reason or nil
      if not reason and e.outcome == 'lost' then reason = 'worker lost' end
      local lastrun = {}
      for _, rk in ipairs(runkeys) do
        local r = redis.call('HMGET', p .. ':run:' .. rk, 'step', 'processed', 'total', 'started')
        if r[1] or r[2] or r[4] then
          lastrun = {r[1] or nil, r[2] or nil, r[3] or nil, r[4] or nil}  -- false (nil reply) -> nil
        end
        redis.call('DEL', p .. ':run:' .. rk)
        redis.call('ZREM', p .. ':running', rk)
        redis.call('SREM', p .. ':runs:' .. e.id, rk)
        redis.call('SREM', p .. ':host:' .. e.worker, rk)
      end
      if e.outcome == 'lost' then
        -- The monitor decides what to do about it (requeue, dead-letter, alert) exactly once.
        local lk = runkeys[1] or (base .. (e.slot or e.pid))
        redis.call('ZADD', p .. ':lost', ts, lk)
        redis.call('HSET', p .. ':lostinfo', lk, cjson.encode({id = e.id, name = e.name,
          worker = e.worker, pid = e.pid, reason = e.exception, at = ts,
          step = e.step or lastrun[1], processed = e.processed or lastrun[2],
          total = e.total or lastrun[3]}))
      end
      local runtime = e.runtime
      if not given(runtime) then
        local started = tonumber(lastrun[4] or redis.call('HGET', tk, 'started') or '')
        if started then runtime = ts - started end
      end
      -- A retry's end that arrives after a later attempt of the same id began describes
      -- the past: it counts, but the task document stays the later attempt's.
      local doc_retries = tonumber(redis.call('HGET', tk, 'retries') or '') or 0
      local stale = e.pid ~= '*' and (tonumber(e.retries) or 0) < doc_retries
      -- Another run of this id still going (a redelivery, a duplicate) keeps the task document
      -- its own: this end only counts. A run of an earlier attempt of a retry chain does not:
      -- its end is late, the chain moved on.
      local others = 0
      for _, rk in ipairs(redis.call('SMEMBERS', p .. ':runs:' .. e.id)) do
        local rr = tonumber(redis.call('HGET', p .. ':run:' .. rk, 'retries') or '') or 0
        if rr >= (tonumber(e.retries) or 0) then others = others + 1 end
      end
      if others == 0 and not stale then
        if e.outcome == 'lost' or e.outcome == 'revoked' then
          -- The monitor has yet to decide (requeue, dead-letter): it reads the original
          -- message, then deletes it. Kept a day at most, whoever never decides.
          redis.call('EXPIRE', p .. ':msg:' .. e.id, 86400)
        else
          redis.call('DEL', p .. ':msg:' .. e.id)
        end
        local fields = message_fields(e)
        fields.name, fields.state, fields.worker, fields.uuid = e.name, e.state, e.worker, e.id
        fields.runtime, fields.exception, fields.traceback = runtime, e.exception, e.traceback
        fields.result, fields.ended, fields.outcome = e.result, mark, e.outcome
        fields.reason = reason
        fields.step, fields.processed = e.step or lastrun[1], e.processed or lastrun[2]
        fields.total = e.total or lastrun[3]
        fields[e.outcome == 'lost' and 'failed' or e.outcome] = ts
        if given(e.started_age) then fields.started = at(e.started_age) end
        hset_given(tk, fields)
        redis.call('EXPIRE', tk, cfg.retention)
        if e.outcome ~= 'retried' then redis.call('ZADD', p .. ':finished', ts, e.id) end
      end
      count(e.name, e.outcome, ts, runtime)
      if given(e.exception) and (e.outcome == 'failed' or e.outcome == 'lost') then
        local l = last[e.name] or {}
        l.last_error = e.exception
        local ex = l.examples or {}
        ex[reason or 'other'] = string.sub(e.exception, 1, 300)
        l.examples = ex
        last[e.name] = l
      end
      if reason and (e.outcome == 'failed' or e.outcome == 'lost') then
        count(e.name, 'r:' .. reason, ts, nil, 1)
      end
      if e.outcome == 'failed' or e.outcome == 'retried' or e.outcome == 'lost' then
        failure(e, tk, ts, reason)
      end
      names_seen[e.name] = now
    end
  end
end

-- One malformed event must not sink the batch: Redis keeps a failed script's earlier writes,
-- so a retried batch would count them twice, and its bad event would fail every retry.
-- It is rejected (reported to the recorder) and the others are applied.
local rejected = {}
for i, e in ipairs(batch.events) do
  local ok, err = pcall(apply, e)
  if not ok then rejected[#rejected + 1] = i .. ': ' .. tostring(err) end
end

write_counts()
write_runtimes()
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
local lexcess = redis.call('ZCARD', p .. ':lost') - 10000
if lexcess > 0 then
  local gone = redis.call('ZRANGE', p .. ':lost', 0, lexcess - 1)
  redis.call('ZREM', p .. ':lost', unpack(gone)); redis.call('HDEL', p .. ':lostinfo', unpack(gone))
end
for _, z in ipairs({'failing', 'gaveup', 'failnames'}) do
  local zk = p .. ':' .. z
  if z == 'failnames' then redis.call('ZREMRANGEBYSCORE', zk, '-inf', now - 86400) end
  local zexcess = redis.call('ZCARD', zk) - cfg.names_max
  if zexcess > 0 then redis.call('ZREMRANGEBYRANK', zk, 0, zexcess - 1) end
end
local qexcess = redis.call('ZCARD', p .. ':quarantined') - 10000
if qexcess > 0 then  -- the oldest quarantined inputs beyond the cap are released
  local gone = redis.call('ZRANGE', p .. ':quarantined', 0, qexcess - 1)
  for _, fp in ipairs(gone) do
    local ok, doc = pcall(cjson.decode, redis.call('HGET', p .. ':quarantine', fp) or '{}')
    if ok and type(doc) == 'table' and doc.name then
      redis.call('HINCRBY', p .. ':quarantine:byname', doc.name, -(tonumber(doc.failures) or 0))
    end
  end
  redis.call('ZREM', p .. ':quarantined', unpack(gone))
  redis.call('HDEL', p .. ':quarantine', unpack(gone))
end
local nexcess = redis.call('ZCARD', p .. ':names') - cfg.names_max
if nexcess > 0 then redis.call('ZREMRANGEBYRANK', p .. ':names', 0, nexcess - 1) end

local cancelled = {}
for _, id in ipairs(batch.live) do
  if redis.call('EXISTS', p .. ':cancel:' .. id) == 1 then cancelled[#cancelled + 1] = id end
end
return {cancelled, rejected}
