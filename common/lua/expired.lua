-- expired.lua: list workers whose lease has run out, and reaped workers due a second look (read
-- only).
--
-- KEYS[1] pixq:{Q}:workers
-- KEYS[2] pixq:{Q}:reaped    sorted set: reaped worker id -> when to look at its list again (ms)
-- ARGV[1] most ids returned in each list
-- ARGV[2] lease, ms
--
-- Returns two lists: the ids of up to ARGV[1] workers whose deadline is before the Redis clock's
-- now (for reap.lua's crash mode), and up to ARGV[1] reaped workers whose second look is due (for
-- its orphan mode). The first is empty when no lease was renewed for two thirds of a lease (the
-- newest deadline is less than a third of a lease away, or passed): no worker could renew (Redis
-- down, loading, refusing writes), and the next beat renews them all (see heartbeat.lua). Not
-- only once every lease ran out: the workers renewed at different times within a heartbeat, so
-- an outage of about a lease lets some run out while others hold. A worker that starts
-- registers first: a fleet that died is reaped (one whose start had to wait for Redis renews
-- every lease then, as a beat does: heartbeat.lua's "rejoin").

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local expired = {}
if last[2] and tonumber(last[2]) >= now + tonumber(ARGV[2]) / 3 then
    expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now, 'LIMIT', 0, limit)
end
return {expired,
        redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)}
