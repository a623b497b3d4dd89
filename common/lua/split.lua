-- split.lua: replace a reserved batch (a JSON array of jobs) with its jobs, each its own entry.
--
-- KEYS[1] pixq:{Q}:active:<worker>
-- KEYS[2] pixq:{Q}:jobs
-- KEYS[3] pixq:{Q}:stats
-- KEYS[4] pixq:{Q}:recov     crash-recovery counts (reap.lua): the batch's is cleared, its jobs
--                            count their own from here
-- ARGV[1] the batch payload as reserved
-- ARGV[2..] the jobs, in the batch's order
--
-- The jobs go to the consumer end of `jobs`, the first one nearest, so they run next and in
-- order (behind pixq's own entries there: see push_behind_own). Returns the number of jobs
-- queued, or -1 if the batch was no longer on the active list.

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

if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
    redis.call('HINCRBY', KEYS[3], 'lease_lost', 1)
    return -1
end
local jobs = {}
for i = #ARGV, 2, -1 do
    jobs[#jobs + 1] = ARGV[i]
end
push_behind_own(2, jobs)
redis.call('HDEL', KEYS[4], redis.sha1hex(ARGV[1]))
redis.call('HINCRBY', KEYS[3], 'batches_split', 1)
return #ARGV - 1
