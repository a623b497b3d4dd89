-- requeue.lua: take a reserved job off the active list and schedule it (or a rewritten copy of
-- it, e.g. with its attempt count raised) to run again later.
--
-- KEYS[1] pixq:{Q}:active:<worker>
-- KEYS[2] pixq:{Q}:delayed
-- KEYS[3] pixq:{Q}:stats
-- KEYS[4] pixq:{Q}:recov   crash-recovery counts: the payload's is cleared (it left the list)
-- ARGV[1] the payload as reserved
-- ARGV[2] the payload to run later
-- ARGV[3] delay, ms
-- ARGV[4] counter to increment ("retried")
-- A parked output's upload task (park.lua) also passes:
-- KEYS[5..] its blob and its job hash, kept at least for the delay plus ARGV[5] seconds (a key
--           already gone stays gone; a longer expiry stays)
--
-- Returns the ms until the earliest delayed payload is due, or -1 if ARGV[1] was not on the active
-- list (the job was taken from this worker: nothing is written).

if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
    redis.call('HINCRBY', KEYS[3], 'lease_lost', 1)
    return -1
end
redis.call('HDEL', KEYS[4], redis.sha1hex(ARGV[1]))
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
if #KEYS > 4 then
    local keep = tonumber(ARGV[3]) + tonumber(ARGV[5]) * 1000
    for i = 5, #KEYS do
        local left = redis.call('PTTL', KEYS[i])
        if left >= 0 and left < keep then
            redis.call('PEXPIRE', KEYS[i], keep)
        end
    end
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local wait = tonumber(nxt[2]) - now
if wait < 0 then
    wait = 0
end
return wait
