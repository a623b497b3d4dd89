-- begin.lua: note that a job starts running (once per run, before any side effect).
--
-- KEYS[1] pixq:{Q}:job:<id>   hash: first_seen (ms), runs
-- KEYS[2] pixq:{Q}:stats
-- ARGV[1] TTL of the job hash, seconds
--
-- Returns {first_seen ms, runs}. first_seen stays the same when the job runs again (a crash
-- recovery or a retry), so that whatever is derived from it (default S3 keys) is the same too. The
-- first run counts in stats as a job received, a run after it as a rerun.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local first_seen = now
if redis.call('HSETNX', KEYS[1], 'first_seen', now) == 0 then
    first_seen = tonumber(redis.call('HGET', KEYS[1], 'first_seen'))
end
local runs = redis.call('HINCRBY', KEYS[1], 'runs', 1)
redis.call('EXPIRE', KEYS[1], ARGV[1]) -- as sent: a Lua number would be formatted back
-- the queue's counts of another type than pixq's (set by hand, another program) are left alone,
-- as finish.lua leaves them (and says so, with each job's settlement): no count can be kept in
-- them, and failing here left the run unknown to its worker (first_seen, and whether to ask
-- before posting back)
local counted = redis.pcall('HINCRBY', KEYS[2], runs > 1 and 'reruns' or 'received', 1)
if type(counted) == 'table' and counted.err and string.sub(counted.err, 1, 10) ~= 'WRONGTYPE ' then
    error(counted)
end
return {first_seen, runs}
