-- finish.lua: settle a reserved job in one step: take it off the worker's active list, store its
-- result for pollers, bury it in the dead list when it failed, and count the outcome.
--
-- KEYS[1] pixq:{Q}:active:<worker>   the list the job was reserved into
-- KEYS[2] pixq:{Q}:result:<id>       where the result JSON goes (ignored when ARGV[2] is empty)
-- KEYS[3] pixq:{Q}:dead              dead letters (ignored when ARGV[4] is empty)
-- KEYS[4] pixq:{Q}:stats             counters
-- KEYS[5] pixq:{Q}:recov             crash-recovery counts, cleared for this payload
-- ARGV[1] the job payload, byte for byte as reserved
-- ARGV[2] result JSON, or "" when the job has no id to report under (unparseable payload)
-- ARGV[3] result TTL, seconds
-- ARGV[4] dead-letter envelope JSON (with a numeric "failed_at", ms), or "" when it succeeded
-- ARGV[5] most entries kept in the dead list
-- ARGV[6] counter to increment: "succeeded", "failed", or "" for none
-- ARGV[7] oldest dead entry kept, ms of age
--
-- Returns 1 if the job was on the active list and is now settled; 0 if it was not there (another
-- worker reaped it: the caller no longer owns the job, and nothing is written).

if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
    redis.call('HINCRBY', KEYS[4], 'lease_lost', 1)
    return 0
end
redis.call('HDEL', KEYS[5], redis.sha1hex(ARGV[1]))
if ARGV[2] ~= '' then
    redis.call('DEL', KEYS[2])
    redis.call('RPUSH', KEYS[2], ARGV[2])
    redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
end
if ARGV[4] ~= '' then
    redis.call('LPUSH', KEYS[3], ARGV[4])
    redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
    redis.call('HINCRBY', KEYS[4], 'dead', 1)
    local t = redis.call('TIME')
    local oldest = tonumber(t[1]) * 1000 - tonumber(ARGV[7])
    for _ = 1, 100 do
        local last = redis.call('LINDEX', KEYS[3], -1)
        local ok, d = pcall(cjson.decode, last or '')
        if not ok or type(d) ~= 'table' or type(d.failed_at) ~= 'number' or d.failed_at >= oldest then
            break
        end
        redis.call('RPOP', KEYS[3])
    end
end
if ARGV[6] ~= '' then
    redis.call('HINCRBY', KEYS[4], ARGV[6], 1)
end
return 1
