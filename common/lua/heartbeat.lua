-- heartbeat.lua: register or renew a worker's lease.
--
-- KEYS[1] pixq:{Q}:workers   sorted set: worker id -> lease deadline (ms, Redis clock)
-- ARGV[1] worker id
-- ARGV[2] lease, ms
-- ARGV[3] "register" (start-up: always adds) or "beat" (renews only a lease still held)
--
-- Returns 1 when the lease is held until now + lease; 0 when a "beat" found the worker gone (it
-- was reaped: its jobs went back to the queue, so it must stop treating them as its own).

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + tonumber(ARGV[2])
if ARGV[3] == 'register' then
    redis.call('ZADD', KEYS[1], deadline, ARGV[1])
    return 1
end
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
    return 0
end
redis.call('ZADD', KEYS[1], 'XX', deadline, ARGV[1])
return 1
