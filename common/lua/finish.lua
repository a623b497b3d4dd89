-- finish.lua: settle a reserved job in one step: take it off the worker's active list, store its
-- result for pollers, bury it in the dead list when it failed, and count the outcome.
--
-- KEYS[1] pixq:{Q}:active:<worker>   the list the job was reserved into
-- KEYS[2] pixq:{Q}:result:<id>       where the result JSON goes (ignored when ARGV[2] is empty)
-- KEYS[3] pixq:{Q}:dead              dead letters (ignored when ARGV[4] is empty)
-- KEYS[4] pixq:{Q}:stats             counters
-- KEYS[5] pixq:{Q}:recov             crash-recovery counts, cleared for this payload
-- KEYS[6] pixq:{Q}:tput              throughput for `pixq stats`: fields "<unix s>:succeeded|
--                                    failed" of the last TPUT_KEEP_S seconds, older ones trimmed
--                                    here (optional: without it nothing is counted there)
-- KEYS[7] pixq:{Q}:job:<id>          the job's postback bookkeeping (only with ARGV[8] or
--                                    ARGV[15])
-- KEYS[8] pixq:{Q}:jobs              the queue, for the next reservation (only with ARGV[9]) and a
--                                    wake-up token (only with ARGV[10])
-- KEYS[9] pixq:{Q}:delayed           where a postback retry waits (only with ARGV[10])
-- ARGV[1] the job payload, byte for byte as reserved
-- ARGV[2] result JSON, or "" when the job has no id to report under (unparseable payload)
-- ARGV[3] result TTL, seconds
-- ARGV[4] dead-letter envelope JSON (with a numeric "failed_at", ms), or "" when it succeeded
-- ARGV[5] most entries kept in the dead list
-- ARGV[6] counters to increment, comma-separated: "succeeded" or "failed" first (the outcome,
--         also counted in KEYS[6]), then others ("succeeded,postbacks_given_up"); "" for none
-- ARGV[7] oldest dead entry kept, ms of age
-- ARGV[8] optional: the digest of the postback just delivered, or "": sets `posted` in KEYS[7]
--         whether or not the job is still ours (a delivered postback is a fact either way; a
--         later run skips only a postback with the same digest: posting.lua)
-- ARGV[9] optional: "next" to reserve the next job of KEYS[8] into KEYS[1] once this one is
--         settled (the worker's ack and its next LMOVE in one round trip), or ""
-- ARGV[10] optional: a postback retry task to schedule once the job is settled, or ""
-- ARGV[11] its delay, ms
-- ARGV[12] the wake-up token pushed onto KEYS[8] when the retry is the earliest delayed payload
--          (as delay.lua does)
-- KEYS[10], ARGV[13], ARGV[14] optional, with "next": pixq:{Q}:parked (the queue's parked
--          outputs, their bytes in `total`), PIXQ_MAX_PARKED_MB in bytes (0: no limit) and RQ_TASK_MARK. Past the
--          limit the next entry is reserved only if it is one of pixq's own (a task or the
--          wake-up token, which are kept nearest the consumer end): the queue's fresh jobs wait
--          until uploads bring the parked bytes down
--
-- ARGV[15] optional: "forgotten" to settle the job even though it is not on the active list when
--          Redis no longer knows it at all (KEYS[7] is gone too): Redis lost it (restarted
--          without its data, failed over to a replica that never had it, flushed), so no other
--          run has it, and the outcome this run holds is all there is. Counted as `forgotten`.
--          A job settled with it leaves KEYS[7] behind (`settled`, with the result's expiry) when
--          there is none (begin.lua never reached Redis): the same call again, after its answer
--          was lost, then finds the job settled rather than forgotten, and writes nothing twice.
--          Looked for only when the job was lost or begin.lua was not sent or failed (ARGV[16]
--          ""): a run begin.lua counted made the hash, and every job's EXISTS cost Redis about a
--          microsecond, 4 % of its work on a no-op job (tests/bench/RESULTS.md).
--
-- ARGV[16] optional: the run_by of the run settled (begin.lua's ARGV[2]), or "" unknown. The
--          worker sends this call before it reads begin.lua's answer (one wait for both), so
--          it names the run by what it sent, not by the run number Redis answers.
--
-- The same call sent again after its answer was lost finds its own settlement (settled_before):
-- no later run began (KEYS[7]'s `run_by` is ARGV[16] and its `runs` is still `run_by_runs`, which
-- a run of a build before run_by moves alone; or there is no `run_by`), the result it stored is
-- the last, its dead letter (which holds the time it failed) in the dead list. It answers 1
-- without writing or counting anything again (before, it counted a lost lease, and the worker
-- logged one, for a job it had settled). A reaped run finds a later run begun, and is a lost
-- lease even when its outcome is the very one that run stored.
--
-- Returns 1 if the job was on the active list and is now settled; 2 if it was settled although
-- Redis had lost it (ARGV[15]); 0 if it was not there (another worker reaped it: the caller no
-- longer owns the job, and nothing else is written). With ARGV[9] "next": {1, 2 or 0, the next
-- payload now on KEYS[1] or nil (none queued, or the job was lost), and with KEYS[10] 1 when the
-- queue is past its parked limit, else 0}.
--
-- KEYS[2] and KEYS[7] are this job's alone. One that holds another type than pixq's (a string
-- set by hand, another program writing under pixq's names) is left alone: the job settles
-- without it (no result stored, no postback bookkeeping), and the answer says so. So are the
-- queue's counts, KEYS[4] and KEYS[5]: no count can be kept in a key of another type, and
-- holding every job of the queue unsettled until the key is removed (as for the dead list,
-- below) keeps nothing a user needs; the job's outcome is what matters. Commands on
-- them go through redis.pcall, since a script's writes before an error stay: a WRONGTYPE
-- there failed every call after the payload had left the active list, so the job never settled
-- and its worker tried it again for ever, taking no other job. Then the answer is always
-- {settled, the next payload or nil, the parked flag or nil, "KEY=TYPE ..." the keys left alone}.

-- include: lib/queue_types.lua
-- Looked at: the queue's keys this call writes after the payload leaves KEYS[1] and before the
-- settlement is complete, and which hold what the job leaves for the user (the dead letter, a
-- postback retry): KEYS[3] with a dead letter, KEYS[9] and KEYS[8] with a retry. Not looked
-- at, on every job's path (each TYPE costs every job one to one and a half microseconds of
-- Redis's time, a hundredth of a no-op job's: queue benchmark): KEYS[1] (LREM is the first
-- write), the counts (KEYS[4], KEYS[5]: left alone, as said above), and what comes after the
-- settlement (KEYS[6]'s throughput, the next reservation from KEYS[8], KEYS[10]): one of another
-- type fails the call then, and its retry finds the job settled (settled_before()).
local check = {}
if ARGV[4] ~= '' then
    check[3] = 'list'
end
if ARGV[10] and ARGV[10] ~= '' then
    check[8], check[9] = 'list', 'zset'
end
local refused = queue_key_of_another_type(check)
if refused then
    return refused
end
-- include: lib/dead_age.lua

local want_next = ARGV[9] == 'next'
local settled = 1
local foreign = {} -- "KEY=TYPE" of this job's keys left alone
local left_alone = {} -- by KEYS index: true once met holding another type

-- `r`, redis.pcall's answer to a command on KEYS[i], one of this job's own keys; nil when the
-- key holds another type than pixq's (WRONGTYPE): it is left alone from then on, and noted with
-- its type. Any other error is raised, as redis.call raises it.
local function own(i, r)
    if type(r) ~= 'table' or not r.err then
        return r
    elseif string.sub(r.err, 1, 10) ~= 'WRONGTYPE ' then
        error(r)
    end
    left_alone[i] = true
    foreign[#foreign + 1] = KEYS[i] .. '=' .. redis.call('TYPE', KEYS[i])['ok']
    return nil
end

-- Counts one `field` in the queue's counts (KEYS[4]), unless they hold another type.
local function count(field)
    if not left_alone[4] then
        own(4, redis.pcall('HINCRBY', KEYS[4], field, 1))
    end
end

-- The answer: `settled`, with `nxt` (the next payload, false for none) and `gated` (nil: not
-- asked) when want_next, and the keys left alone.
local function answer(nxt, gated)
    if #foreign > 0 then
        return {settled, nxt or false, gated or false, table.concat(foreign, ' ')}
    elseif not want_next then
        return settled
    elseif gated == nil then
        return {settled, nxt}
    end
    return {settled, nxt, gated}
end

-- Whether this settlement was written already (see above): asked only of a payload missing from
-- the active list.
local function settled_before()
    if (ARGV[2] == '' and ARGV[4] == '') or not KEYS[7] then
        return false
    end
    local got = not left_alone[7] and
        own(7, redis.pcall('HMGET', KEYS[7], 'run_by', 'run_by_runs', 'runs'))
    local by = got and got[1]
    -- a run of a build before run_by counted `runs` alone; one of 6b4fc49 wrote no run_by_runs
    local later = got and got[2] and got[2] ~= got[3]
    local last = ARGV[2] ~= '' and not left_alone[2] and own(2, redis.pcall('LINDEX', KEYS[2], -1))
    -- the dead letter anywhere in the list (other workers' may be newer: an outage loses many
    -- answers at once); the postback retry is not looked for: the result, stored in the same
    -- step, tells already, and the retry may be promoted, or run, by the time the call is sent
    -- again (its first delay, 1 s, is shorter than PIXQ_REDIS_TIMEOUT_MS)
    return (not by or (by == (ARGV[16] or '') and not later)) and
        (ARGV[2] == '' or left_alone[2] or last == ARGV[2]) and
        (ARGV[4] == '' or redis.call('LPOS', KEYS[3], ARGV[4]) ~= false)
end

-- The payload leaves the active list first: a write that adds nothing, so that a full Redis
-- (maxmemory with noeviction), which refuses a script's command that adds data only before the
-- script's first write, takes the whole settlement, as it takes begin.lua's count: the job ran,
-- its result (and postback) is what it is, and the list gives back its payload's bytes. Before,
-- the postback mark came first and a full Redis refused the settlement of every job posted
-- back (kept by the worker, run again if it stopped meanwhile), but took that of a job without
-- one. What else refuses writes (a replica's READONLY, a failed save's MISCONF) still refuses
-- the whole call.
local removed = redis.call('LREM', KEYS[1], 1, ARGV[1])
local marked = ARGV[8] and ARGV[8] ~= '' and
    own(7, redis.pcall('HSET', KEYS[7], 'posted', ARGV[8]))
local hash_new = false -- KEYS[7] made by the HSET below (begin.lua's has an expiry)
if marked then
    if redis.call('TTL', KEYS[7]) == -1 then
        -- begin.lua never reached Redis (or its expiry passed): the hash goes with the result
        redis.call('EXPIRE', KEYS[7], ARGV[3])
        hash_new = true
    end
end
if removed == 0 then
    -- asked only here, off the path of every job that is settled as usual
    if settled_before() then
        return answer(false)
    end
    local forgotten = ARGV[15] == 'forgotten' and
        (hash_new or (not marked and redis.call('EXISTS', KEYS[7]) == 0))
    if not forgotten then
        count('lease_lost')
        settled = 0
        return answer(false)
    end
    count('forgotten')
    settled = 2
end
own(5, redis.pcall('HDEL', KEYS[5], redis.sha1hex(ARGV[1])))
if ARGV[15] == 'forgotten' and not marked and (settled == 2 or (ARGV[16] or '') == '') and
    redis.call('EXISTS', KEYS[7]) == 0 then
    redis.call('HSET', KEYS[7], 'settled', 1)
    redis.call('EXPIRE', KEYS[7], ARGV[3])
end
if ARGV[10] and ARGV[10] ~= '' then
    -- in the same step as the settlement: a lost answer or a crash cannot drop the retry
    local t = redis.call('TIME')
    local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[11])
    local first = redis.call('ZRANGE', KEYS[9], 0, 0, 'WITHSCORES')
    redis.call('ZADD', KEYS[9], due, ARGV[10])
    if #first == 0 or due < tonumber(first[2]) then
        redis.call('RPUSH', KEYS[8], ARGV[12])
    end
end
local pushed = ARGV[2] ~= '' and not left_alone[2] and
    own(2, redis.pcall('RPUSH', KEYS[2], ARGV[2]))
if pushed then
    -- the result replaces any earlier one (a rerun's): pushed, then the list cut to it; a DEL
    -- before the push would cost every job a call for what only a rerun needs
    if pushed > 1 then
        redis.call('LTRIM', KEYS[2], -1, -1)
    end
    redis.call('EXPIRE', KEYS[2], ARGV[3])
end
if ARGV[4] ~= '' then
    redis.call('LPUSH', KEYS[3], ARGV[4])
    redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
    count('dead')
    trim_dead_by_age(3, tonumber(ARGV[7]), 100)
end
for counter in string.gmatch(ARGV[6], '[^,]+') do
    count(counter)
end
local outcome = string.match(ARGV[6], '^[^,]*')
if KEYS[6] and (outcome == 'succeeded' or outcome == 'failed') then
    -- per-second outcome counts for `pixq stats` (throughput over the last minute). The field
    -- "trimmed" is the oldest second whose fields may remain; trimming and the expiry (the hash
    -- goes when idle, so the trim loop stays short) are renewed once per second, not per job:
    -- looked at only by the job that opens a second's field (the count is 1), since the window
    -- moves only when the second does.
    local TPUT_KEEP_S = 120
    -- the second as TIME's string: Redis would format a Lua number back for the field name
    local sec = redis.call('TIME')[1]
    local keep = tonumber(sec) - TPUT_KEEP_S + 1
    local trimmed = keep
    if redis.call('HINCRBY', KEYS[6], sec .. ':' .. outcome, 1) == 1 then
        trimmed = tonumber(redis.call('HGET', KEYS[6], 'trimmed'))
    end
    if not trimmed or trimmed < keep then
        -- from where the last trim stopped; after a clock jump, bounded work
        for s = math.max(trimmed or keep, keep - 3 * TPUT_KEEP_S), keep - 1 do
            redis.call('HDEL', KEYS[6], s .. ':succeeded', s .. ':failed')
        end
        redis.call('HSET', KEYS[6], 'trimmed', keep)
        redis.call('EXPIRE', KEYS[6], TPUT_KEEP_S)
    end
end
if want_next and not KEYS[10] then
    return answer(redis.call('LMOVE', KEYS[8], KEYS[1], 'RIGHT', 'LEFT'))
end
if want_next then
    local limit = tonumber(ARGV[13])
    if limit > 0 and (tonumber(redis.call('HGET', KEYS[10], 'total')) or 0) > limit then
        -- pixq's own entries only, kept nearest the consumer end (take.lua looks further)
        local head = redis.call('LINDEX', KEYS[8], -1)
        if head and (string.sub(head, 1, #ARGV[14]) == ARGV[14] or head == ARGV[12]) then
            return answer(redis.call('LMOVE', KEYS[8], KEYS[1], 'RIGHT', 'LEFT'), 1)
        end
        return answer(false, 1)
    end
    return answer(redis.call('LMOVE', KEYS[8], KEYS[1], 'RIGHT', 'LEFT'), 0)
end
return answer()
