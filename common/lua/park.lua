-- park.lua: hand a job's throttled outputs over to the delayed queue and release the job.
--
-- KEYS[1] pixq:{Q}:active:<worker>
-- KEYS[2] pixq:{Q}:job:<id>         the job's state while outputs are parked
-- KEYS[3] pixq:{Q}:delayed
-- KEYS[4] pixq:{Q}:stats
-- KEYS[5] pixq:{Q}:recov            crash-recovery counts: the payload's is cleared
-- KEYS[6] pixq:{Q}:parked           the queue's parked outputs: each blob's size under its key,
--                                   and their sum in `total` (upload_done.lua takes a blob's off,
--                                   parked_forget.lua those of blobs gone otherwise)
-- KEYS[7..] pixq:{Q}:blob:<id>:<n>  one per parked output, in the order of the tasks below
-- ARGV[1] the job payload as reserved
-- ARGV[2] the result so far (JSON: original_meta, images uploaded, errors)
-- ARGV[3] how long the blobs and the job hash are kept past the time their output is due, seconds
-- ARGV[4] objects uploaded so far (JSON array, for wait_for_s3)
-- ARGV[5] "forgotten" to park even though ARGV[1] is not on the active list when Redis no longer
--         knows the job at all (KEYS[2], written by begin.lua when the run began, is gone too):
--         Redis lost it (restarted without its data, failed over to a replica that never had
--         it, flushed), so no other run has it, and the run that calls this holds its only copy
--         (as finish.lua's ARGV[15]). Counted as `forgotten`. Or "".
-- then, per parked output: the upload task JSON, its delay in ms, the encoded bytes
--
-- The job leaves the active list; the job hash holds `payload`, `base`, `objs` and `pending`
-- (outputs still to settle); each blob is kept for its delay plus the TTL and its task is
-- scheduled; the job hash is kept for the longest delay plus the TTL. However long the fleet's
-- backlog makes the delays, nothing expires before it is due.
-- The outputs of an earlier, finished run of the same job (a dead job retried) are forgotten
-- first: their done:/img:/obj:/err:/fail: fields and `last` would make this run's outputs look
-- recorded already, and the job would never complete. (Two runs parked at once, a job_id
-- submitted again while its first run's uploads wait, share one state: not supported.)
-- Returns the number parked, or -1 if the job was no longer on the active list. With ARGV[5]
-- "forgotten", {that, 1 if it was parked although Redis had lost the job, else 0}.
-- {-2, "KEY=TYPE"} when KEYS[2] holds another type than pixq's (a string set by hand, another
-- program writing under pixq's names): it cannot hold the job's state, and nothing is written
-- (the caller fails the outputs). Looked at first, since a script's writes before an error stay:
-- a WRONGTYPE at HKEYS took the payload off the active list, and the job was lost.

local kind = redis.call('TYPE', KEYS[2])['ok']
if kind ~= 'hash' and kind ~= 'none' then
    return {-2, KEYS[2] .. '=' .. kind}
end
-- include: lib/queue_types.lua
local refused = queue_key_of_another_type({[1] = 'list', [3] = 'zset', [4] = 'hash',
    [5] = 'hash', [6] = 'hash'})
if refused then
    return refused
end
local forgotten_ok = ARGV[5] == 'forgotten'
-- include: lib/take_reserved.lua
local forgotten = take_reserved(1, 2, 4, 5, ARGV[1], forgotten_ok)
if not forgotten then
    if forgotten_ok then
        return {-1, 0}
    end
    return -1
end
local ttl_ms = tonumber(ARGV[3]) * 1000
local n = (#ARGV - 5) / 3
for _, f in ipairs(redis.call('HKEYS', KEYS[2])) do
    if f == 'last' or f:find('^done:') or f:find('^img:') or f:find('^obj:') or f:find('^err:') or
        f:find('^fail:') then
        redis.call('HDEL', KEYS[2], f)
    end
end
redis.call('HSET', KEYS[2], 'payload', ARGV[1], 'base', ARGV[2], 'objs', ARGV[4], 'pending', n)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local longest, bytes = 0, 0
for i = 1, n do
    local task, delay, blob = ARGV[3 + 3 * i], tonumber(ARGV[4 + 3 * i]), ARGV[5 + 3 * i]
    -- a blob left by an earlier run is replaced: counted once
    bytes = bytes + #blob - (tonumber(redis.call('HGET', KEYS[6], KEYS[6 + i])) or 0)
    redis.call('HSET', KEYS[6], KEYS[6 + i], #blob)
    redis.call('SET', KEYS[6 + i], blob, 'PX', delay + ttl_ms)
    redis.call('ZADD', KEYS[3], now + delay, task)
    longest = math.max(longest, delay)
end
redis.call('PEXPIRE', KEYS[2], longest + ttl_ms)
redis.call('HINCRBY', KEYS[6], 'total', bytes)
redis.call('HINCRBY', KEYS[4], 'throttled', n)
if forgotten_ok then
    return {n, forgotten}
end
return n
