-- begin.lua: note that a job starts running (once per run, before any side effect).
--
-- KEYS[1] pixq:{Q}:job:<id>   hash: first_seen (ms), runs, run_by, run_by_runs
-- KEYS[2] pixq:{Q}:stats
-- ARGV[1] TTL of the job hash, seconds
-- ARGV[2] optional: what this run is known by (the worker's id, '/', a count of its runs), kept
--         as `run_by`, with this run's number as `run_by_runs`: finish.lua, sent before this
--         call's answer is read, tells from them whether a later run began (its ARGV[16]), one
--         of a worker of a build before run_by too (its begin.lua counts runs alone)
--
-- Returns {first_seen ms, runs}. first_seen stays the same when the job runs again (a crash
-- recovery or a retry), so that whatever is derived from it (default S3 keys) is the same too. The
-- first run counts in stats as a job received, a run after it as a rerun.

-- Taken by a full Redis (maxmemory with noeviction) too: the run goes on whatever the answer,
-- and without this call it would go on without its first_seen (the hour of its default S3 keys,
-- then this host's: a rerun could write other objects) and uncounted, while its settlement, whose
-- first write removes the payload, is taken (`pixq stats` counted the job settled but never
-- received: chaos seed 62). Redis refuses a script's command that adds data only while the
-- script has written nothing: so the first write is the expiry, which adds nothing (on a hash
-- not there yet it does nothing, but counts as the script's write all the same). What this
-- call adds is a few fields a job, kept for the TTL.
local renewed = redis.call('EXPIRE', KEYS[1], ARGV[1]) == 1 -- as sent: see below
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local first_seen = now
if redis.call('HSETNX', KEYS[1], 'first_seen', now) == 0 then
    first_seen = tonumber(redis.call('HGET', KEYS[1], 'first_seen'))
end
local runs = redis.call('HINCRBY', KEYS[1], 'runs', 1)
if ARGV[2] and ARGV[2] ~= '' then
    redis.call('HSET', KEYS[1], 'run_by', ARGV[2], 'run_by_runs', runs)
end
if not renewed then
    redis.call('EXPIRE', KEYS[1], ARGV[1]) -- as sent: a Lua number would be formatted back
end
-- include: lib/count.lua
-- (failing here on counts of another type left the run unknown to its worker: first_seen, and
-- whether to ask before posting back; finish.lua says the key was left alone)
count_in(2, runs > 1 and 'reruns' or 'received')
return {first_seen, runs}
