-- adopt.lua: replace a reserved payload with a rewritten one (the worker gave the job a job_id),
-- so that a crash from here on re-runs the job under the same id.
--
-- KEYS[1] pixq:{Q}:active:<worker>
-- KEYS[2] pixq:{Q}:recov     crash-recovery counts (reap.lua), by sha1 of the payload
-- ARGV[1] the payload as reserved
-- ARGV[2] the payload to keep instead
--
-- The payload's crash-recovery count goes with it: finish.lua clears the new payload's, and a
-- job that keeps crashing its workers is still a poison pill after its count's first crashes.
--
-- Returns 1 if swapped, 0 if ARGV[1] was no longer on the list (the job was taken from us).

if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
    return 0
end
redis.call('LPUSH', KEYS[1], ARGV[2])
local old = redis.sha1hex(ARGV[1])
local n = redis.call('HGET', KEYS[2], old)
if n then
    redis.call('HDEL', KEYS[2], old)
    redis.call('HSET', KEYS[2], redis.sha1hex(ARGV[2]), n)
end
return 1
