-- expired.lua: list workers whose lease has run out (read only).
--
-- KEYS[1] pixq:{Q}:workers
-- ARGV[1] most ids returned
--
-- Returns the ids of up to ARGV[1] workers whose deadline is before the Redis clock's now.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now, 'LIMIT', 0, tonumber(ARGV[1]))
