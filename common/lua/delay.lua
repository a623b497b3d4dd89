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

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = now + tonumber(ARGV[2])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
redis.call('ZADD', KEYS[1], due, ARGV[1])
if #first == 0 or due < tonumber(first[2]) then
    redis.call('RPUSH', KEYS[2], ARGV[3])
end
return due
