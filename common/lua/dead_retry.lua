-- dead_retry.lua: put dead jobs back on the queue (`pixq dead retry`).
--
-- KEYS[1] pixq:{Q}:dead
-- KEYS[2] pixq:{Q}:jobs
-- KEYS[3] pixq:{Q}:stats
-- ARGV[1] "all", or a job id: which entries to retry
-- ARGV[2] entries of the list as it was when the retry began not looked at yet: its first ARGV[2]
--         (newest first)
-- ARGV[3] how many of them to look at: the oldest, ARGV[2] - ARGV[3] to ARGV[2] - 1
-- ARGV[4] the queue's stats "dead" when the retry began
--
-- One call looks at one window of the list, oldest first, so that retrying a dead list of
-- 10,000 entries of 200 KB never holds Redis (and every worker) for the seconds a pass over
-- its gigabytes takes: the caller calls again with ARGV[2] lowered by ARGV[3], until it is 0.
-- The window is counted from the head: entries pushed there meanwhile (jobs dying, a job put
-- back dying again), each with its count in stats "dead" (finish.lua, reap.lua), move it down
-- by the rise of that count since ARGV[4], so that the window holds none of them; entries
-- trimmed at the tail meanwhile (PIXQ_DEAD_MAX, PIXQ_DEAD_MAX_AGE_S) and those the window
-- retries do not move the entries not looked at yet. (Counted from the tail, past the entries
-- kept, the window skipped as many entries as were trimmed, and took new ones in their place.)
-- An entry that does not hold the job id's text (as JSON writes it, without \u escapes) is not
-- decoded. Returns {retried, kept}: the window's entries retried (removed) and left alone.
--
-- Each entry's original payload ("job") goes to the producer end of `jobs`, like a new
-- submission, and one of pixq's own (a parked output's upload task) to the consumer end, where a
-- queue past PIXQ_MAX_PARKED_MB still takes it (take.lua); entries without a payload are left
-- alone. A poison pill (reap.lua's
-- pixq-task:{"pixq_poison": payload, ...}, buried as it was reserved) is retried as the payload it
-- wraps: re-queued as is, the next worker would bury it again without running it. A job stamped
-- by `pixq submit` (its last member "pixq_enqueued_at": unix ms) is stamped with now, the time
-- it is queued again: the oldest job's age in `pixq stats` (and the alert on it) counts from
-- the retry, not from its first submission days or months before; the rest of it is kept
-- byte for byte.

local upto, count = tonumber(ARGV[2]), tonumber(ARGV[3])
if upto < 1 or count < 1 then
    return {0, 0}
end
-- include: lib/queue_types.lua
-- Every key written below, looked at before the first write: a `jobs` of another type (set by
-- hand) failed the call at its LPUSH after the entry's LREM, and the job was in neither list,
-- lost; a `stats` of another type at the HINCRBY after them, the jobs put back said not to be.
local refused = queue_key_of_another_type({[1] = 'list', [2] = 'list', [3] = 'hash'})
if refused then
    return refused
end
local pushed = (tonumber(redis.call('HGET', KEYS[3], 'dead')) or 0) - tonumber(ARGV[4])
if pushed < 0 then -- the stats were reset meanwhile
    pushed = 0
end
local t = redis.call('TIME')
local now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local entries = redis.call('LRANGE', KEYS[1], math.max(0, upto - count) + pushed,
                           upto - 1 + pushed)
local n = 0
for i = #entries, 1, -1 do
    local ok, d = false, nil
    if ARGV[1] == 'all' or string.find(entries[i], ARGV[1], 1, true) then
        ok, d = pcall(cjson.decode, entries[i])
    end
    if ok and type(d) == 'table' and type(d.job) == 'string' and
        (ARGV[1] == 'all' or d.job_id == ARGV[1]) then
        local job = d.job
        -- (pills written before the mark, kept in dead for months, start with the JSON itself;
        -- before reap.lua left pills alone, a pill could be wrapped in another)
        for _ = 1, 8 do
            local json = string.sub(job, 1, 10) == 'pixq-task:' and string.sub(job, 11) or job
            local okp, p = false, nil
            if string.sub(json, 1, 15) == '{"pixq_poison":' then
                okp, p = pcall(cjson.decode, json)
            end
            if not (okp and type(p) == 'table' and type(p.pixq_poison) == 'string') then
                break
            end
            job = p.pixq_poison
        end
        redis.call('LREM', KEYS[1], -1, entries[i]) -- from the tail: where the window is
        if string.sub(job, 1, 10) == 'pixq-task:' then
            redis.call('RPUSH', KEYS[2], job)
        else
            job = string.gsub(job, '("pixq_enqueued_at":)%d+}$', '%1' .. now .. '}')
            redis.call('LPUSH', KEYS[2], job)
        end
        n = n + 1
    end
end
if n > 0 then
    redis.call('HINCRBY', KEYS[3], 'dead_retried', n)
end
return {n, #entries - n}
