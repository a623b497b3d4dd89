-- promote.lua: move delayed work that is due onto the queue.
--
-- KEYS[1] pixq:{Q}:delayed   sorted set: payload -> due time (ms, Redis clock)
-- KEYS[2] pixq:{Q}:jobs
-- KEYS[3] pixq:{Q}:stats
-- ARGV[1] most payloads moved in one call
--
-- Due payloads go to the consumer end of `jobs`, earliest due taken first; due jobs (retries,
-- --delay submissions) behind pixq's own entries (see below).
-- Returns {moved, ms until the next payload is due (-1 if none is left)}.

-- include: lib/own_entries.lua

-- include: lib/queue_types.lua
-- Both keys looked at before any write: a `jobs` of another type (set by hand) fails the call
-- with nothing written.
local refused = queue_key_of_another_type({[1] = 'zset', [2] = 'list'})
if refused then
    return refused
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
-- The first write is PERSIST of the set, which never has an expiry (it changes nothing, but
-- counts as the script's write): Redis refuses a script's command that adds data only while the
-- script has written nothing, so a full Redis (maxmemory with noeviction) takes the pushes
-- after it. Refused, the delayed uploads, whose end frees their parked bytes, and the postback
-- retries waited until Redis had room. (The payloads leave the set only once pushed: a push
-- refused for another reason, an ACL, loses none.)
redis.call('PERSIST', KEYS[1])
local fresh = {}
for i = #due, 1, -1 do
    if not own(due[i]) then
        fresh[#fresh + 1] = due[i]
    end
end
push_behind_own(2, fresh)
for i = #due, 1, -1 do
    if own(due[i]) then
        redis.call('RPUSH', KEYS[2], due[i])
    end
    redis.call('ZREM', KEYS[1], due[i])
end
if #due > 0 then
    redis.call('HINCRBY', KEYS[3], 'promoted', #due)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt == 0 then
    return {#due, -1}
end
local wait = tonumber(nxt[2]) - now
if wait < 0 then
    wait = 0
end
return {#due, wait}
