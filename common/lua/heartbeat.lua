-- heartbeat.lua: register or renew a worker's lease.
--
-- KEYS[1] pixq:{Q}:workers   sorted set: worker id -> lease deadline (ms, Redis clock)
-- ARGV[1] worker id
-- ARGV[2] lease, ms
-- ARGV[3] "register" (start-up: always adds), "rejoin" (adds, as a worker that saw Redis fail:
--         at a start that had to wait for Redis, or after its record was gone) or "beat"
--         (renews only a lease still held)
--
-- Returns 1 when the lease is held until now + lease, 2 when it is and Redis is full (below); 0
-- when a "beat" found the worker gone (it was reaped: its jobs went back to the queue, so it must
-- stop treating them as its own).
--
-- A "beat" that finds no lease renewed for two thirds of a lease (the newest deadline, its own
-- too, less than a third of a lease away; a live fleet renews every heartbeat, at most a third
-- of the lease) comes after a time when no worker could renew: Redis was down, loading, frozen
-- or refusing writes (after a failed save) for about a lease or longer, and some leases or all
-- ran out meanwhile (each worker renewed at its own time within a heartbeat). The workers did
-- not die, Redis's clock ran on: every lease is renewed until now + lease, so that the first
-- worker back does not reap the others, whose beats come next (their jobs would run twice,
-- counted as crashes). expired.lua lists no worker meanwhile. A worker that did die during the
-- outage is reaped a lease later.
--
-- A "rejoin" that finds the same does the same before it adds the worker: a worker that started
-- during the outage (its first tries to register failed) registers as Redis comes back, often
-- before the others' first beat, and its fresh lease would let its start-up reap take them for
-- dead. A "register" (a start that reached Redis at once) does not: no lease renewed is then
-- taken for a fleet that died, whose workers the start-up reap recovers at once (a crash loop
-- gives back the job each run held, counted towards the poison pill). A worker that starts
-- cleanly within a heartbeat after an outage still reaps the others.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + tonumber(ARGV[2])
local beat = ARGV[3] == 'beat'
if beat and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
    return 0
end
local renew_all = false
if ARGV[3] ~= 'register' then
    local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
    renew_all = last[2] and tonumber(last[2]) < now + tonumber(ARGV[2]) / 3
end
-- The worker's own lease is the first write, and tells whether Redis is full (maxmemory with
-- noeviction): Redis then refuses a script's command that adds data while the script has written
-- nothing, and takes ZADD for one even where it only moves a deadline. The worker, told so,
-- takes no fresh job (each settles into more than its payload: its result and the job's hash)
-- until Redis has room. A full Redis takes the lease all the same, after a PERSIST of the set
-- (which never has an expiry: it changes nothing, but counts as the script's write): refused,
-- every lease ran out a lease after Redis filled up, and every worker stopped (lease_overdue).
local function renew_own()
    if beat then
        return redis.pcall('ZADD', KEYS[1], 'XX', deadline, ARGV[1])
    end
    return redis.pcall('ZADD', KEYS[1], deadline, ARGV[1])
end
-- include: lib/full.lua
local done = renew_own()
local full = refused_as_full(done)
if full then
    redis.call('PERSIST', KEYS[1])
    done = renew_own()
end
if refusal(done) then
    return done
end
if renew_all then
    for _, wid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
        redis.call('ZADD', KEYS[1], 'XX', deadline, wid)
    end
end
return full and 2 or 1
