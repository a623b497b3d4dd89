-- reap.lua: give a worker's reserved jobs back to the queue and forget the worker.
--
-- KEYS[1] pixq:{Q}:workers
-- KEYS[2] pixq:{Q}:active:<worker>
-- KEYS[3] pixq:{Q}:jobs
-- KEYS[4] pixq:{Q}:recov     hash: sha1(payload) -> times the payload was recovered from a crash
-- KEYS[5] pixq:{Q}:stats
-- ARGV[1] worker id
-- ARGV[2] "crash" (the lease expired: any worker may call this) or "graceful" (the worker itself,
--         stopping: nothing is counted against its jobs)
-- ARGV[3] recoveries after which a job is a poison pill (crash mode)
--
-- Jobs go to the consumer end of `jobs`, so they run next. In crash mode each payload's recovery
-- count goes up; a payload that reaches ARGV[3] is instead wrapped as {"pixq_poison": payload,
-- "error": "..."}, which the next worker answers with a failed postback and a dead letter, without
-- running it again. The wrapper starts with `{"pixq_poison":` (workers recognise pixq's own
-- entries by their first bytes), so it is written by hand: cjson would put "error" first.
--
-- Returns the number of jobs given back, or -1 if the worker's lease is still valid (crash mode).

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] == 'crash' then
    local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
    if deadline and tonumber(deadline) >= now then
        return -1
    end
end
local items = redis.call('LRANGE', KEYS[2], 0, -1)
local max = tonumber(ARGV[3])
for i = #items, 1, -1 do
    local item = items[i]
    if ARGV[2] == 'crash' then
        local h = redis.sha1hex(item)
        local n = redis.call('HINCRBY', KEYS[4], h, 1)
        if n >= max then
            redis.call('HDEL', KEYS[4], h)
            item = '{"pixq_poison":' .. cjson.encode(item) .. ',"error":' ..
                       cjson.encode('the job crashed its worker ' .. n .. ' times') .. '}'
            redis.call('HINCRBY', KEYS[5], 'poisoned', 1)
        else
            redis.call('HINCRBY', KEYS[5], 'recovered', 1)
        end
    else
        redis.call('HINCRBY', KEYS[5], 'requeued_on_stop', 1)
    end
    redis.call('RPUSH', KEYS[3], item)
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
return #items
