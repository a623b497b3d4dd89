-- requeue.lua: take a reserved job off the active list and schedule it (or a rewritten copy of
-- it, e.g. with its attempt count raised) to run again later.
--
-- KEYS[1] pixq:{Q}:active:<worker>
-- KEYS[2] pixq:{Q}:delayed
-- KEYS[3] pixq:{Q}:stats
-- ARGV[1] the payload as reserved
-- ARGV[2] the payload to run later
-- ARGV[3] delay, ms
-- ARGV[4] counter to increment ("retried")
--
-- Returns the ms until the earliest delayed payload is due, or -1 if ARGV[1] was not on the active
-- list (the job was taken from this worker: nothing is written).

if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
    redis.call('HINCRBY', KEYS[3], 'lease_lost', 1)
    return -1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local wait = tonumber(nxt[2]) - now
if wait < 0 then
    wait = 0
end
return wait
