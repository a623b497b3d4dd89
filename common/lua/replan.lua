-- replan.lua: bring a bucket's parked uploads forward after its limiter re-planned at a higher
-- rate (rl_acquire.lua): their due times, their reserved slots' or the far ones' they parked
-- for, were planned at the lower rate (seconds apart after an outage), and the fleet would send
-- at that rate for as long as they last.
--
-- KEYS[1] pixq:{Q}:delayed   sorted set: payload -> due time (ms, Redis clock)
-- ARGV[1] the bucket
-- ARGV[2] the bucket's interval at its new rate, µs
-- ARGV[3] most delayed entries looked at, nearest due first
-- ARGV[4] the bucket's epoch after the re-plan (rl_acquire.lua)
--
-- The bucket's upload tasks (pixq-task:{"pixq_upload": {"bucket": ...}}) keep their order and are made
-- due one interval apart from now: the i-th (from 0) at now + i intervals, if that is sooner
-- than it was. Their reservations are void (the re-plan changed the epoch): each takes a slot at
-- the new rate when it comes. A task that reserved its slot in the new epoch (parked by a worker
-- that acquired after the re-plan, before this call) keeps its time: its slot is good, and the
-- worker that takes it early would send at once (upload.c holds_slot), ahead of the rate; so does
-- one reserved in a later epoch (a decrease or another re-plan came before this call). Other
-- entries (jobs, postback retries, other buckets' uploads) are left as they are.
-- Returns the number of tasks brought forward.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local entries = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0,
                           tonumber(ARGV[3]))
local step = tonumber(ARGV[2]) / 1000
local rank, moved = 0, 0
for i = 1, #entries, 2 do
    local p = entries[i]
    if p:sub(1, 10) == 'pixq-task:' and p:find('"pixq_upload"', 11, true) and
        p:find(ARGV[1], 11, true) then
        local ok, doc = pcall(cjson.decode, p:sub(11))
        local task = ok and type(doc) == 'table' and doc.pixq_upload
        if type(task) == 'table' and task.bucket == ARGV[1] and
            not (task.reserved == true and (tonumber(task.epoch) or -1) >= tonumber(ARGV[4])) then
            local at = now + math.floor(rank * step)
            rank = rank + 1
            if at < tonumber(entries[i + 1]) then
                redis.call('ZADD', KEYS[1], 'XX', at, p)
                moved = moved + 1
            end
        end
    end
end
return moved
