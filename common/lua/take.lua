-- take.lua: reserve the next entry of a queue whose parked outputs may be past their limit.
--
-- KEYS[1] pixq:{Q}:jobs
-- KEYS[2] pixq:{Q}:active:<worker>
-- KEYS[3] pixq:{Q}:parked            the queue's parked outputs, their bytes in `total` (park.lua)
-- ARGV[1] PIXQ_MAX_PARKED_MB in bytes, or -1 for pixq's own entries only (Redis is full)
-- ARGV[2] RQ_TASK_MARK
-- ARGV[3] RQ_WAKE_TOKEN
-- ARGV[4] how often a look further than the consumer end is made, ms (fleet-wide, per queue)
--
-- Within the limit the next entry is reserved, whatever it is (as LMOVE). Past it, only one of
-- pixq's own: a parked output's upload, a postback retry, a pill, the wake-up token. Fresh jobs
-- wait, since each would park more; the uploads, which bring the bytes down, go on. pixq's own
-- entries are kept nearest the consumer end (promote.lua, reap.lua and split.lua push jobs
-- behind them), so the nearest entry is enough; but a job pushed there otherwise (by a client
-- that RPUSHes, or by a worker of an older build) would hide them, and the queue would take
-- nothing until their blobs expired. So the SCAN entries nearest that end are looked through,
-- and when that finds none, not again for ARGV[4] ms (noted in KEYS[3]'s `scanned_at`).
-- Returns {the entry now on KEYS[2] or nil, 1 if the queue is past its limit, else 0}.
--
-- The worker takes through this script, pixq's own entries only (ARGV[1] -1), while Redis is full
-- (maxmemory with noeviction): the uploads of parked outputs free memory, a postback retry or
-- a pill finishes a job, while a fresh job would settle into more than its payload. Redis then
-- refuses LMOVE and BLMOVE (it counts them as adding data, though they only move an entry),
-- but only while a script has written nothing: so the first write is PERSIST of the active list,
-- which never has an expiry (it changes nothing, but counts as the script's write all the same).

local SCAN = 64

redis.call('PERSIST', KEYS[2])
if (tonumber(redis.call('HGET', KEYS[3], 'total')) or 0) <= tonumber(ARGV[1]) then
    return {redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT'), 0}
end
local function own(e)
    return string.sub(e, 1, #ARGV[2]) == ARGV[2] or e == ARGV[3]
end
local head = redis.call('LINDEX', KEYS[1], -1)
if not head then
    return {false, 1}
end
if own(head) then
    return {redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT'), 1}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = tonumber(redis.call('HGET', KEYS[3], 'scanned_at'))
if last and now - last < tonumber(ARGV[4]) and now >= last then
    return {false, 1}
end
local tail = redis.call('LRANGE', KEYS[1], -SCAN, -2)
for i = #tail, 1, -1 do
    if own(tail[i]) then
        redis.call('LREM', KEYS[1], -1, tail[i])
        redis.call('LPUSH', KEYS[2], tail[i])
        return {tail[i], 1}
    end
end
redis.call('HSET', KEYS[3], 'scanned_at', now) -- none: not looked for again for ARGV[4] ms
return {false, 1}
