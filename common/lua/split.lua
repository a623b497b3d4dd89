-- split.lua: replace a reserved batch (a JSON array of jobs) with its jobs, each its own entry.
--
-- KEYS[1] pixq:{Q}:active:<worker>
-- KEYS[2] pixq:{Q}:jobs
-- KEYS[3] pixq:{Q}:stats
-- KEYS[4] pixq:{Q}:recov     crash-recovery counts (reap.lua): the batch's is cleared, its jobs
--                            count their own from here
-- KEYS[5] pixq:{Q}:epoch     the token of the queue's data (lib/data_lost.lua)
-- KEYS[6] optional: pixq:{Q}:split:<call>, a key of this call's own (the worker makes the name
--                            once and sends it with every try): written when the jobs are
--                            queued (for an hour, longer than the worker asks again), so that
--                            the call sent again after its answer was lost finds its own work
--                            done and answers as it did
-- ARGV[1] the batch payload as reserved
-- ARGV[2] the token the worker read where it reserved the batch, or "" unknown
-- ARGV[3..] the jobs, in the batch's order
--
-- The jobs go to the consumer end of `jobs`, the first one nearest, so they run next and in
-- order (behind pixq's own entries there: see push_behind_own). A batch missing from the active
-- list was split by the same call whose answer was lost (KEYS[6] says so) or taken from the
-- worker (reaped), unless Redis lost the data it was reserved in (data_lost, see adopt.lua):
-- then the jobs are queued all the same (the batch taken off the queue, should it be there).
-- Returns {the number of jobs queued, 1 if Redis had lost the batch else 0}, or {-1, 0} if it
-- was not there.

-- include: lib/own_entries.lua
-- include: lib/data_lost.lua

local lost = 0
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
    local done = KEYS[6] and redis.call('GET', KEYS[6])
    if done then
        return {#ARGV - 2, tonumber(done)} -- split by this call already, its answer lost
    end
    if not data_lost(redis.call('GET', KEYS[5]), ARGV[2]) then
        redis.call('HINCRBY', KEYS[3], 'lease_lost', 1)
        return {-1, 0}
    end
    redis.call('LREM', KEYS[2], -1, ARGV[1])
    redis.call('HINCRBY', KEYS[3], 'forgotten', 1)
    lost = 1
end
local jobs = {}
for i = #ARGV, 3, -1 do
    jobs[#jobs + 1] = ARGV[i]
end
push_behind_own(2, jobs)
redis.call('HDEL', KEYS[4], redis.sha1hex(ARGV[1]))
redis.call('HINCRBY', KEYS[3], 'batches_split', 1)
if KEYS[6] then
    redis.call('SET', KEYS[6], lost, 'EX', 3600)
end
return {#ARGV - 2, lost}
