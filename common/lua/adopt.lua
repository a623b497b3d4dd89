-- adopt.lua: replace a reserved payload with a rewritten one (the worker gave the job a job_id),
-- so that a crash from here on re-runs the job under the same id.
--
-- KEYS[1] pixq:{Q}:active:<worker>
-- ARGV[1] the payload as reserved
-- ARGV[2] the payload to keep instead
--
-- Returns 1 if swapped, 0 if ARGV[1] was no longer on the list (the job was taken from us).

if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
    return 0
end
redis.call('LPUSH', KEYS[1], ARGV[2])
return 1
