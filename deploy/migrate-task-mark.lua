-- migrate-task-mark.lua: mark pixq's own entries written by a build before the task mark.
--
-- Since the mark (rq.h RQ_TASK_MARK), pixq's own entries start with `pixq-task:`; older builds
-- wrote them as bare JSON ({"pixq_upload": ...}, {"pixq_postback": ...}, {"pixq_poison": ...}),
-- which new workers refuse as jobs. Run once per queue, with every worker stopped (a graceful stop
-- puts what each held back on `jobs`):
--
--   redis-cli --eval deploy/migrate-task-mark.lua 'pixq:{default}:delayed' 'pixq:{default}:jobs'
--
-- KEYS[1] pixq:{Q}:delayed   sorted set: entries keep their due times
-- KEYS[2] pixq:{Q}:jobs      list: entries keep their places
--
-- Returns the number of entries marked. Running it again marks nothing more.

local MARK = 'pixq-task:'
local function unmarked(v)
    for _, name in ipairs({'pixq_upload', 'pixq_postback', 'pixq_poison'}) do
        if string.sub(v, 1, #name + 3) == '{"' .. name .. '"' then
            return true
        end
    end
    return false
end
local n = 0
local delayed = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #delayed, 2 do
    if unmarked(delayed[i]) then
        redis.call('ZREM', KEYS[1], delayed[i])
        redis.call('ZADD', KEYS[1], delayed[i + 1], MARK .. delayed[i])
        n = n + 1
    end
end
local jobs = redis.call('LRANGE', KEYS[2], 0, -1)
for i = 1, #jobs do
    if unmarked(jobs[i]) then
        redis.call('LSET', KEYS[2], i - 1, MARK .. jobs[i])
        n = n + 1
    end
end
return n
