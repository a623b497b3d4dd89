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

-- pixq's own entries (tasks, the wake-up token) at the consumer end of `jobs` stay there: fresh
-- entries pushed at that end go behind them. Past PIXQ_MAX_PARKED_MB only pixq's own entries are
-- taken (take.lua), and a fresh job in front must not hide the uploads that bring it back under.
local function own(e)
    return string.sub(e, 1, 10) == 'pixq-task:' or e == '{"pixq_wake":true}'
end
local function push_behind_own(q, fresh) -- q: the index of `jobs` in KEYS
    if #fresh == 0 then
        return
    end
    local run = 0 -- pixq's own entries at the consumer end, each read once (a job's only once:
    -- a window read at once would copy the jobs past the run too, up to 250 kB each)
    while run < 1000 do
        local e = redis.call('LINDEX', KEYS[q], -run - 1)
        if not e or not own(e) then
            break
        end
        run = run + 1
    end
    local mine = run > 0 and redis.call('RPOP', KEYS[q], run) or {}
    for i = 1, #fresh, 1000 do
        redis.call('RPUSH', KEYS[q], unpack(fresh, i, math.min(i + 999, #fresh)))
    end
    for i = #mine, 1, -1000 do -- back in their order: RPOP gave the nearest first
        local chunk = {}
        for j = i, math.max(i - 999, 1), -1 do
            chunk[#chunk + 1] = mine[j]
        end
        redis.call('RPUSH', KEYS[q], unpack(chunk))
    end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
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
