-- Incidents: open/join, remind, resolve and set-state, each atomic, so N monitors notify once.
--
-- Keys ({p} = ARGV[2]):
--   {p}:inc:{id}        HASH the incident: id key kind name subject state severity opened_at
--                       notified_at notifications count snooze_until note by resolved_at
--                       resolution alert (JSON record of the last alert); TTL while active:
--                       ACTIVE_TTL (refreshed on every change), once resolved: ARGV ttl
--   {p}:inc:{id}:m      SET  subjects of a grouped incident (runs), capped at MEMBERS_MAX
--   {p}:inc:key:{key}   STRING -> the id of the active incident for (kind, task name, subject)
--   {p}:inc:active      ZSET id -> opened_at: incidents not resolved (looked at every pass)
--   {p}:incidents       ZSET id -> opened_at: every incident, newest LIST_MAX kept
--
-- ARGV[1] is the operation; the rest depends on it (see each function).

local op, p = ARGV[1], ARGV[2]
local ACTIVE_TTL = 30 * 86400
local MEMBERS_MAX = 10000
local LIST_MAX = 1000

local function ikey(id) return p .. ':inc:' .. id end

-- The id of the active incident for ``key``, or false (a stale pointer is dropped).
local function active(key)
  local id = redis.call('GET', p .. ':inc:key:' .. key)
  if not id then return false end
  local state = redis.call('HGET', ikey(id), 'state')
  if state and state ~= 'resolved' then return id end
  redis.call('DEL', p .. ':inc:key:' .. key)
  return false
end

local function touch(id, key)
  redis.call('EXPIRE', ikey(id), ACTIVE_TTL)
  redis.call('EXPIRE', ikey(id) .. ':m', ACTIVE_TTL)
  if key then redis.call('EXPIRE', p .. ':inc:key:' .. key, ACTIVE_TTL) end
end

local function join(id, members, count)
  if #members > 0 and redis.call('SCARD', ikey(id) .. ':m') < MEMBERS_MAX then
    redis.call('SADD', ikey(id) .. ':m', unpack(members))
  end
  redis.call('HINCRBY', ikey(id), 'count', count)
  touch(id, redis.call('HGET', ikey(id), 'key'))
end

-- open: now, then per item 9 values: key, group key ('' = none), new id, kind, task name,
-- subject, severity, alert record (JSON), members (JSON list; a group when not empty).
-- Returns per item {id, 'opened' | 'joined' | 'existing'}.
local function open()
  local now = ARGV[3]
  local out = {}
  for i = 4, #ARGV, 9 do
    local key, gkey, id = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    local members = cjson.decode(ARGV[i + 8])
    local count = math.max(#members, 1)
    local gid = gkey ~= '' and active(gkey)
    local known = gid or active(key)
    if known then
      local joins = gid or #members > 0
      if gid and #members == 0 then members = {ARGV[i + 5]} end  -- one run joins a group
      if joins then join(known, members, count) end
      out[#out + 1] = {known, joins and 'joined' or 'existing'}
    else
      redis.call('HSET', ikey(id), 'id', id, 'key', key, 'kind', ARGV[i + 3],
                 'name', ARGV[i + 4], 'subject', ARGV[i + 5], 'state', 'open',
                 'severity', ARGV[i + 6], 'opened_at', now, 'notified_at', now,
                 'notifications', 1, 'count', count, 'alert', ARGV[i + 7],
                 'group', #members > 0 and 1 or 0)
      if #members > 0 then redis.call('SADD', ikey(id) .. ':m', unpack(members)) end
      redis.call('SET', p .. ':inc:key:' .. key, id)
      touch(id, key)
      redis.call('ZADD', p .. ':inc:active', now, id)
      redis.call('ZADD', p .. ':incidents', now, id)
      redis.call('ZREMRANGEBYRANK', p .. ':incidents', 0, -(LIST_MAX + 1))
      out[#out + 1] = {id, 'opened'}
    end
  end
  return out
end

-- remind: now, repeat seconds, limit, kinds (JSON list; empty = every kind). Claims the
-- reminders that are due: open and not notified for ``repeat`` seconds, or snoozed until now.
local function remind()
  local now, every, limit = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  local kinds = {}
  for _, k in ipairs(cjson.decode(ARGV[6])) do kinds[k] = true end
  local due = {}
  for _, id in ipairs(redis.call('ZRANGE', p .. ':inc:active', 0, limit - 1)) do
    local f = redis.call('HMGET', ikey(id), 'state', 'notified_at', 'snooze_until', 'kind')
    local state = f[1]
    if not state or state == 'resolved' then
      redis.call('ZREM', p .. ':inc:active', id)
    elseif next(kinds) == nil or kinds[f[4]] then
      local wake = state == 'snoozed' and tonumber(f[3] or 0) <= now
      if wake or (state == 'open' and now - tonumber(f[2] or 0) >= every) then
        redis.call('HSET', ikey(id), 'state', 'open', 'notified_at', now)
        redis.call('HINCRBY', ikey(id), 'notifications', 1)
        touch(id, redis.call('HGET', ikey(id), 'key'))
        due[#due + 1] = id
      end
    end
  end
  return due
end

-- resolve: now, ttl, then per item 3 values: id, resolution, by. Returns the ids this call
-- resolved (each is resolved, and so announced, once).
local function resolve()
  local now, ttl = ARGV[3], tonumber(ARGV[4])
  local done = {}
  for i = 5, #ARGV, 3 do
    local id = ARGV[i]
    local f = redis.call('HMGET', ikey(id), 'state', 'key')
    if f[1] and f[1] ~= 'resolved' then
      redis.call('HSET', ikey(id), 'state', 'resolved', 'resolved_at', now,
                 'resolution', ARGV[i + 1], 'by', ARGV[i + 2])
      if redis.call('GET', p .. ':inc:key:' .. f[2]) == id then
        redis.call('DEL', p .. ':inc:key:' .. f[2])
      end
      redis.call('ZREM', p .. ':inc:active', id)
      redis.call('EXPIRE', ikey(id), ttl)
      redis.call('EXPIRE', ikey(id) .. ':m', ttl)
      done[#done + 1] = id
    end
  end
  return done
end

-- set: id, state (acknowledged | snoozed | open), now, snooze until, note, by. Returns 1 when
-- set, 0 when there is no such incident, -1 when it is already resolved.
local function set()
  local id = ARGV[3]
  local state = redis.call('HGET', ikey(id), 'state')
  if not state then return 0 end
  if state == 'resolved' then return -1 end
  redis.call('HSET', ikey(id), 'state', ARGV[4], 'changed_at', ARGV[5],
             'snooze_until', ARGV[6], 'note', ARGV[7], 'by', ARGV[8])
  if ARGV[4] == 'acknowledged' then redis.call('HSETNX', ikey(id), 'acked_at', ARGV[5]) end
  touch(id, redis.call('HGET', ikey(id), 'key'))
  return 1
end

if op == 'open' then return open() end
if op == 'remind' then return remind() end
if op == 'resolve' then return resolve() end
if op == 'set' then return set() end
return redis.error_reply('incidents.lua: unknown operation ' .. tostring(op))
