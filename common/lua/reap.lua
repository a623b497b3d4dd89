-- reap.lua: give a worker's reserved jobs back to the queue and forget the worker.
--
-- KEYS[1] pixq:{Q}:workers
-- KEYS[2] pixq:{Q}:active:<worker>
-- KEYS[3] pixq:{Q}:jobs
-- KEYS[4] pixq:{Q}:recov     hash: sha1(payload) -> times the payload was recovered from a crash
-- KEYS[5] pixq:{Q}:stats
-- KEYS[6] pixq:{Q}:reaped    sorted set: reaped worker id -> when to look at its list again (ms)
-- KEYS[7] pixq:{Q}:dead      where a pill that keeps killing workers goes
-- ARGV[1] worker id
-- ARGV[2] "crash" (the lease expired: any worker may call this), "graceful" (the worker itself,
--         stopping: nothing is counted against its jobs), "hung" (the worker itself, giving up a
--         job that ran past PIXQ_JOB_HANG_S: counted as a crash) or "orphan" (a second look at a
--         reaped worker, when its entry in KEYS[6] is due)
-- ARGV[3] recoveries after which a job is a poison pill (crash and hung modes; orphan mode
--         gives jobs back uncounted: they landed on the list after the reap and never ran)
-- ARGV[4] all but orphan mode: how long after this call to look at the list again, ms
-- ARGV[5] optional: the most entries KEYS[7] keeps (PIXQ_DEAD_MAX), trimmed to after a burial, as
--         finish.lua trims after a dead letter
--
-- Why a second look: a worker is reaped while it cannot answer (frozen, cut off), and one that
-- stops gives its jobs back while it may still wait for one. A reservation it sent before may
-- still reach Redis and move a job onto its list afterwards (a worker's BLMOVE ends while its
-- lease holds, but a call can be held up on the way). Should the worker then be gone for good,
-- nobody would ever look at that list. So every mode but orphan notes the worker in KEYS[6], due
-- ARGV[4] ms later, and when that is due, orphan mode gives back what the list holds unless the
-- worker registered again (it is alive: its list is its own, and an expiry of its new lease is a
-- new reap, with a note of its own). Orphan mode leaves a note that is not due yet: it was written
-- by a later reap than the one the caller saw.
--
-- Jobs go to the consumer end of `jobs`, so they run next (behind pixq's own entries there:
-- see push_behind_own). In crash mode each payload's recovery
-- count goes up; a payload that reaches ARGV[3] is instead wrapped as pixq-task:{"pixq_poison":
-- payload, "error": "..."}, which the next worker answers with a failed postback and a dead letter,
-- without running it again. The wrapper starts with `pixq-task:{"pixq_poison":` (pixq's own
-- entries carry the mark pixq-task:, which no job can start with), so it is written by hand:
-- cjson would put "error" first. A pill is never wrapped again (a worker killed while it posted
-- a pill's failure back): it goes back as it is (wrapped twice, it was buried as unparseable: no
-- postback, no result). Its crashes are counted too, and a pill that reaches ARGV[3] of them, 5
-- at least (a kill in the middle of its postback is likely a deploy's, not the pill's), goes to
-- KEYS[7] as a dead entry, without a postback: its handling itself kills workers.
--
-- Returns the number of jobs given back, or -1 if the worker's lease is still valid (crash mode),
-- or it registered again or its note is not due (orphan mode).

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mode = ARGV[2]
local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
if mode == 'crash' and deadline and tonumber(deadline) >= now then
    return -1
end
-- include: lib/queue_types.lua
-- Every key written below, looked at before the first write (reaping is off every job's path):
-- a `jobs` or `dead` of another type failed the call after the payloads' recovery counts had
-- gone up (or a pill's had been cleared for its burial), and each later try counted them again.
-- But the queue's counts (KEYS[5]): one of another type is left alone, as finish.lua leaves it,
-- since no count can be kept there and holding the worker's jobs would keep nothing.
local refused = queue_key_of_another_type({[1] = 'zset', [2] = 'list', [3] = 'list',
    [4] = 'hash', [6] = 'zset', [7] = 'list'})
if refused then
    return refused
end
-- Taken by a full Redis (maxmemory with noeviction) too: Redis refuses a script's command that
-- adds data only while the script has written nothing, and takes the counts' HINCRBY and the
-- pushes for such. So the first write is PERSIST of the worker's list, which never has an
-- expiry (it changes nothing, but counts as the script's write all the same). Refused, a dead
-- worker's jobs waited on its list until Redis had room.
redis.call('PERSIST', KEYS[2])

-- include: lib/count.lua
if mode == 'orphan' then
    local due = redis.call('ZSCORE', KEYS[6], ARGV[1])
    if not due or tonumber(due) > now then
        return -1
    end
    redis.call('ZREM', KEYS[6], ARGV[1])
    if deadline then
        return -1
    end
end
-- include: lib/own_entries.lua

-- The text of the last top-level member `name` of the JSON object `s` as written, up to the
-- next comma, brace or space (a number's digits), or nil: cjson reads a number as a double,
-- and an integer job_id is the worker's as written (job.c, integer_as_written).
local function member_text(s, name)
    local want, depth, i, found = '"' .. name .. '"', 0, 1, nil
    while true do
        local at = string.find(s, '[{}%[%]"]', i)
        if not at then
            return found
        end
        local c = string.sub(s, at, at)
        if c == '"' then
            local j = at + 1
            while true do -- to the closing quote, past escapes
                local q = string.find(s, '["\\]', j)
                if not q then
                    return found
                end
                if string.sub(s, q, q) == '"' then
                    j = q
                    break
                end
                j = q + 2
            end
            if depth == 1 and string.sub(s, at, j) == want then
                local value = string.match(s, '^%s*:%s*([^,}%s]+)', j + 1)
                found = value or found
            end
            i = j + 1
        else
            depth = depth + ((c == '{' or c == '[') and 1 or -1)
            i = at + 1
        end
    end
end

-- The job_id of payload `text` that cjson read as `job`, as the worker reads it, or nil.
local function job_id_of(text, job)
    if type(job.job_id) == 'string' then
        return job.job_id
    end
    if type(job.job_id) == 'number' then
        local digits = member_text(text, 'job_id')
        if digits and #digits < 128 and string.match(digits, '^%-?%d+$') then -- JOB_ID_MAX
            return digits
        end
    end
    return nil
end

local items = redis.call('LRANGE', KEYS[2], 0, -1)
local fresh, mine = {}, {}
local max = tonumber(ARGV[3])
for i = #items, 1, -1 do
    local item = items[i]
    if mode == 'orphan' then
        -- it landed on the list after the reap or the stop: it never ran there
        count_in(5, 'orphaned')
    elseif mode ~= 'graceful' and string.sub(item, 1, 25) == 'pixq-task:{"pixq_poison":' then
        local h = redis.sha1hex(item)
        local n = redis.call('HINCRBY', KEYS[4], h, 1)
        if n >= math.max(max, 5) then
            redis.call('HDEL', KEYS[4], h)
            local entry = {job = item, attempts = 1, failed_at = now,
                           error = 'a poison pill killed its workers ' .. n .. ' times while ' ..
                               'its failure was posted back: buried without a postback'}
            local ok, pill = pcall(cjson.decode, string.sub(item, 11))
            if ok and type(pill) == 'table' and type(pill.pixq_poison) == 'string' then
                local okj, job = pcall(cjson.decode, pill.pixq_poison)
                if okj and type(job) == 'table' then
                    entry.job_id = job_id_of(pill.pixq_poison, job)
                end
            end
            redis.call('LPUSH', KEYS[7], cjson.encode(entry))
            if ARGV[5] then
                redis.call('LTRIM', KEYS[7], 0, tonumber(ARGV[5]) - 1)
            end
            count_in(5, 'dead')
            item = false
        else
            count_in(5, 'recovered')
        end
    elseif mode ~= 'graceful' then
        local h = redis.sha1hex(item)
        local n = redis.call('HINCRBY', KEYS[4], h, 1)
        if n >= max then
            redis.call('HDEL', KEYS[4], h)
            local times = n == 1 and '1 time' or n .. ' times'
            local why = "the job's worker died while running it (killed, out of memory, or " ..
                            'crashed), ' .. times .. ' (PIXQ_MAX_RECOVERIES): not run again'
            if mode == 'hung' then
                why = 'the job used more CPU than PIXQ_JOB_HANG_S allows and was given up ' ..
                          '(its runs lost: ' .. times .. ', PIXQ_MAX_RECOVERIES): not run again'
            end
            item = 'pixq-task:{"pixq_poison":' .. cjson.encode(item) .. ',"error":' ..
                       cjson.encode(why) .. '}'
            count_in(5, 'poisoned')
        else
            count_in(5, 'recovered')
        end
    else
        count_in(5, 'requeued_on_stop')
    end
    if item then
        if own(item) then
            mine[#mine + 1] = item
        else
            fresh[#fresh + 1] = item
        end
    end
end
push_behind_own(3, fresh)
for _, item in ipairs(mine) do
    redis.call('RPUSH', KEYS[3], item)
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
if mode ~= 'orphan' then
    redis.call('ZADD', KEYS[6], now + tonumber(ARGV[4]), ARGV[1])
end
return #items
