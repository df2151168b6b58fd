-- reschedule.lua: move a run's deadline, unless a flush moved it since the monitor read it.
--
-- KEYS[1]  {p}:running   ZSET runkey -> deadline
-- ARGV[1]  runkey
-- ARGV[2]  the score the monitor saw
-- ARGV[3]  the new deadline
-- Returns 1 when moved, 0 when the run is gone or its score changed (a heartbeat arrived).

local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or math.abs(tonumber(score) - tonumber(ARGV[2])) > 1e-6 then return 0 end
redis.call('ZADD', KEYS[1], 'XX', tonumber(ARGV[3]), ARGV[1])
return 1
