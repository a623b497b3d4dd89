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

-- include: lib/own_entries.lua

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
