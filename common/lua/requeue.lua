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
-- With more keys:
-- KEYS[5..] a parked output's blob and its job hash (its upload task, park.lua), or the job hash
--           of a job run again: each kept at least for the delay plus ARGV[5] seconds (a key
--           already gone stays gone; a longer expiry stays), so that the run finds them
-- ARGV[5] those seconds
-- ARGV[6] optional: "forgotten" to schedule ARGV[2] even though ARGV[1] is not on the active
--         list when Redis no longer knows the job at all (the last key, its job hash written by
--         begin.lua, is gone too): Redis lost it (restarted without its data, failed over to a
--         replica that never had it, flushed), so no other run has it, and the run that calls
--         this holds its only copy (as finish.lua's ARGV[15]). Counted as `forgotten`.
--
-- Returns the ms until the earliest delayed payload is due, or -1 if ARGV[1] was not on the active
-- list (the job was taken from this worker: nothing is written). With ARGV[6], {that, 1 if it was
-- scheduled although Redis had lost the job, else 0}.

-- include: lib/queue_types.lua
local refused = queue_key_of_another_type({[1] = 'list', [2] = 'zset', [3] = 'hash',
    [4] = 'hash'})
if refused then
    return refused
end

local forgotten_ok = ARGV[6] == 'forgotten'
-- include: lib/take_reserved.lua
local forgotten = take_reserved(1, #KEYS, 3, 4, ARGV[1], forgotten_ok)
if not forgotten then
    if forgotten_ok then
        return {-1, 0}
    end
    return -1
end
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
if forgotten_ok then
    return {wait, forgotten}
end
return wait
