-- park.lua: hand a job's throttled outputs over to the delayed queue and release the job.
--
-- KEYS[1] pixq:{Q}:active:<worker>
-- KEYS[2] pixq:{Q}:job:<id>         the job's state while outputs are parked
-- KEYS[3] pixq:{Q}:delayed
-- KEYS[4] pixq:{Q}:stats
-- KEYS[5..] pixq:{Q}:blob:<id>:<n>  one per parked output, in the order of the tasks below
-- ARGV[1] the job payload as reserved
-- ARGV[2] the result so far (JSON: original_meta, images uploaded, errors)
-- ARGV[3] TTL of the job hash and of the blobs, seconds
-- ARGV[4] objects uploaded so far (JSON array, for wait_for_s3)
-- then, per parked output: the upload task JSON, its delay in ms, the encoded bytes
--
-- The job leaves the active list; the job hash holds `payload`, `base`, `objs` and `pending`
-- (outputs still to settle); each blob is stored with the TTL and its task is scheduled.
-- Returns the number parked, or -1 if the job was no longer on the active list.

if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
    redis.call('HINCRBY', KEYS[4], 'lease_lost', 1)
    return -1
end
local ttl = tonumber(ARGV[3])
local n = (#ARGV - 4) / 3
redis.call('HSET', KEYS[2], 'payload', ARGV[1], 'base', ARGV[2], 'objs', ARGV[4], 'pending', n)
redis.call('EXPIRE', KEYS[2], ttl)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, n do
    local task, delay, blob = ARGV[2 + 3 * i], ARGV[3 + 3 * i], ARGV[4 + 3 * i]
    redis.call('SET', KEYS[4 + i], blob, 'EX', ttl)
    redis.call('ZADD', KEYS[3], now + tonumber(delay), task)
end
redis.call('HINCRBY', KEYS[4], 'throttled', n)
return n
