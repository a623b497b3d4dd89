-- delay.lua: enqueue a payload to run after a delay (producers: `pixq submit --delay`).
--
-- KEYS[1] pixq:{Q}:delayed
-- KEYS[2] pixq:{Q}:jobs
-- ARGV[1] payload
-- ARGV[2] delay, ms
-- ARGV[3] wake-up token
--
-- When the payload becomes the earliest delayed one, a wake-up token goes to the consumer end of
-- `jobs`: a worker blocked on the queue takes it, promotes, and sleeps exactly until the due time.
-- Returns the due time (ms, Redis clock).

-- include: lib/queue_types.lua
-- Both keys looked at before the ZADD: a `jobs` of another type (set by hand) failed the call at
-- the wake-up token's RPUSH after it, and `pixq submit --delay` said "nothing was enqueued" (and
-- gave the job_id back) of a job left in `delayed`.
local refused = queue_key_of_another_type({[1] = 'zset', [2] = 'list'})
if refused then
    return refused
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = now + tonumber(ARGV[2])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
redis.call('ZADD', KEYS[1], due, ARGV[1])
if #first == 0 or due < tonumber(first[2]) then
    redis.call('RPUSH', KEYS[2], ARGV[3])
end
return due
