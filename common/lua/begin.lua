-- begin.lua: note that a job starts running (once per run, before any side effect).
--
-- KEYS[1] pixq:{Q}:job:<id>   hash: first_seen (ms), runs, posted
-- KEYS[2] pixq:{Q}:stats
-- KEYS[3] pixq:{Q}:result:<id>
-- ARGV[1] TTL of the job hash, seconds
--
-- Returns {first_seen ms, runs}. first_seen stays the same when the job runs again (a crash
-- recovery or a retry), so that whatever is derived from it (default S3 keys) is the same too. The
-- first run counts in stats as a job received, a run after it as a rerun.
--
-- A stored result means that this id's job already ended (a run after a crash, or a retry, comes
-- before any result: finish.lua stores it as the job leaves the active list): this is the job
-- pushed again with its job_id. Its old result and its `posted` mark go, and its runs count
-- again from 1, so that it is run, stored and posted back as a job of its own.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local first_seen = now
if redis.call('HSETNX', KEYS[1], 'first_seen', now) == 0 then
    first_seen = tonumber(redis.call('HGET', KEYS[1], 'first_seen'))
end
if redis.call('DEL', KEYS[3]) == 1 then
    redis.call('HDEL', KEYS[1], 'posted', 'runs')
end
local runs = redis.call('HINCRBY', KEYS[1], 'runs', 1)
redis.call('EXPIRE', KEYS[1], ARGV[1]) -- as sent: a Lua number would be formatted back
redis.call('HINCRBY', KEYS[2], runs > 1 and 'reruns' or 'received', 1)
return {first_seen, runs}
