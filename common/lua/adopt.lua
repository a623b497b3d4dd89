-- adopt.lua: replace a reserved payload with a rewritten one (the worker gave the job a job_id),
-- so that a crash from here on re-runs the job under the same id.
--
-- KEYS[1] pixq:{Q}:active:<worker>
-- KEYS[2] pixq:{Q}:recov     crash-recovery counts (reap.lua), by sha1 of the payload
-- KEYS[3] pixq:{Q}:jobs      where a restart may have put the payload back
-- KEYS[4] pixq:{Q}:stats     counters
-- KEYS[5] pixq:{Q}:epoch     the token of the queue's data (lib/data_lost.lua)
-- KEYS[6] optional: pixq:{Q}:adopt:<new job_id>, written (for an hour) when the job is kept
--                            after Redis lost it: the call sent again after its answer was lost
--                            then tells a reap of the kept job (its payload gone from the list
--                            again, the token still not the one read) from lost data
-- ARGV[1] the payload as reserved
-- ARGV[2] the payload to keep instead (it holds a fresh job_id: no other entry is the same)
-- ARGV[3] the token the worker read where it reserved the payload, or "" unknown
--
-- The payload's crash-recovery count goes with it: finish.lua clears the new payload's, and a
-- job that keeps crashing its workers is still a poison pill after its count's first crashes.
--
-- A payload missing from the active list was taken from the worker (reaped: it went back to the
-- queue), unless Redis lost the data it was reserved in (restarted without it, failed over to a
-- replica that never had it, flushed: data_lost) and the worker holds the job's only copy. The
-- lease is made again (the payload taken off the queue, should it be there), so that the job
-- runs once: here. A call sent again after its answer was lost finds its own work done.
--
-- Returns 1 if swapped (now or by an earlier call), 2 if kept after Redis lost it (now or by an
-- earlier call), 0 if the job was taken from us.

-- include: lib/data_lost.lua

if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
    if redis.call('LPOS', KEYS[1], ARGV[2]) then
        if KEYS[6] and redis.call('EXISTS', KEYS[6]) == 1 then
            return 2 -- kept by this call already, after Redis lost the job: answered as then
        end
        return 1
    end
    if not data_lost(redis.call('GET', KEYS[5]), ARGV[3]) or
        (KEYS[6] and redis.call('EXISTS', KEYS[6]) == 1) then
        return 0 -- taken from us (reaped), perhaps after an earlier call kept it
    end
    redis.call('LREM', KEYS[3], -1, ARGV[1])
    redis.call('LPUSH', KEYS[1], ARGV[2])
    redis.call('HINCRBY', KEYS[4], 'forgotten', 1)
    if KEYS[6] then
        redis.call('SET', KEYS[6], 1, 'EX', 3600)
    end
    return 2
end
redis.call('LPUSH', KEYS[1], ARGV[2])
local old = redis.sha1hex(ARGV[1])
local n = redis.call('HGET', KEYS[2], old)
if n then
    redis.call('HDEL', KEYS[2], old)
    redis.call('HSET', KEYS[2], redis.sha1hex(ARGV[2]), n)
end
return 1
