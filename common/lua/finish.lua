-- finish.lua: settle a reserved job in one step: take it off the worker's active list, store its
-- result for pollers, bury it in the dead list when it failed, and count the outcome.
--
-- KEYS[1] pixq:{Q}:active:<worker>   the list the job was reserved into
-- KEYS[2] pixq:{Q}:result:<id>       where the result JSON goes (ignored when ARGV[2] is empty)
-- KEYS[3] pixq:{Q}:dead              dead letters (ignored when ARGV[4] is empty)
-- KEYS[4] pixq:{Q}:stats             counters
-- ARGV[1] the job payload, byte for byte as reserved
-- ARGV[2] result JSON, or "" when the job has no id to report under (unparseable payload)
-- ARGV[3] result TTL, seconds
-- ARGV[4] dead-letter envelope JSON, or "" when the job succeeded
-- ARGV[5] most entries kept in the dead list
-- ARGV[6] counter to increment: "succeeded" or "failed"
--
-- Returns 1 if the job was on the active list and is now settled; 0 if it was not there (another
-- worker reaped it: the caller no longer owns the job, and nothing is written).

if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
    redis.call('HINCRBY', KEYS[4], 'lease_lost', 1)
    return 0
end
if ARGV[2] ~= '' then
    redis.call('DEL', KEYS[2])
    redis.call('RPUSH', KEYS[2], ARGV[2])
    redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
end
if ARGV[4] ~= '' then
    redis.call('LPUSH', KEYS[3], ARGV[4])
    redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
    redis.call('HINCRBY', KEYS[4], 'dead', 1)
end
redis.call('HINCRBY', KEYS[4], ARGV[6], 1)
return 1
