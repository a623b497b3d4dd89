-- take_reserved.lua: included (`-- include: lib/take_reserved.lua`) by the scripts that take a
-- reserved payload off a worker's active list to schedule it again (park.lua, requeue.lua).
--
-- Takes `payload` off the active list KEYS[active] and its crash-recovery count off KEYS[recov]
-- (keys by their index, so that each call names a declared key). When it is not on the list, the
-- job was taken from this worker (its lease lost: counted in KEYS[stats], nil returned), unless
-- `forgotten_ok` and the job's hash KEYS[job] is gone too: Redis lost the job, and the run that
-- calls this holds its only copy (counted as `forgotten`). Returns 1 then, 0 when it was there.
local function take_reserved(active, job, stats, recov, payload, forgotten_ok)
    local forgotten = 0
    if redis.call('LREM', KEYS[active], 1, payload) == 0 then
        if not (forgotten_ok and redis.call('EXISTS', KEYS[job]) == 0) then
            redis.call('HINCRBY', KEYS[stats], 'lease_lost', 1)
            return nil
        end
        redis.call('HINCRBY', KEYS[stats], 'forgotten', 1)
        forgotten = 1
    end
    redis.call('HDEL', KEYS[recov], redis.sha1hex(payload))
    return forgotten
end
