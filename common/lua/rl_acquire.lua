-- rl_acquire.lua: take tokens from one S3 bucket's shared rate limit (GCRA on Redis's clock).
--
-- KEYS[1] pixq:rl:{<bucket>}   hash: tat (µs), optional overrides rate (tokens/s) and burst,
--                              adaptive state w_max and last_fail (µs), region, the epoch's
--                              counters decreases and replans, plan (tokens/s) and plan_set
--                              (1: the plan is an operator's, rl_set.lua)
-- ARGV[1] default rate, tokens/s (PIXQ_S3_RATE)
-- ARGV[2] default burst
-- ARGV[3] cost, tokens; 0 to read the epoch only (an upload that comes for the slot it holds),
--         after a re-plan when one is due
-- ARGV[4] longest wait to reserve, ms: a caller whose slot is further away reserves nothing
-- ARGV[5] lowest effective rate, tokens/s: a floor for slowing down, never above the rate itself
-- ARGV[6] idle expiry of the hash, ms: set again at each call without an operator override
--         (rate or burst); with one, the hash is made persistent instead (an override written
--         with a plain HSET onto a limiter that had an expiry does not expire with it)
--
-- The effective rate is the configured one, or lower after a throttling answer (rl_feedback.lua):
-- it follows CUBIC from the decrease, C = 0.4, beta = 0.7, as the AWS SDKs' adaptive mode does.
-- A decrease (rl_feedback.lua) records the rate it planned for in `plan`. When the rate has
-- climbed back to twice that, or to the configured rate, the call that sees it re-plans: as a
-- decrease does, it drops the slots reserved ahead (beyond the burst window, the tokens in use
-- counted again at the new rate) and voids their reservations; the caller is told, so that it
-- brings the bucket's parked uploads forward (replan.lua). Without it, after an outage the slots
-- reserved at the floor kept their spacing of seconds for as long as the backlog lasted, and the
-- fleet sent at a fraction of the rate it had recovered. An operator's `pixq limit set` records
-- the rate the reserved slots were planned at too (rl_set.lua): above a lowered rate, so that
-- the next call re-plans (`plan > rate` with `plan_set`, which that re-plan removes: the slots
-- reserved at the old pace void, not sent at it), or below a raised one (the parked uploads
-- brought forward). A plan above the rate without `plan_set` is one a worker of a higher
-- PIXQ_S3_RATE wrote (a fleet part-way through a change of it): re-planned at each call, the
-- workers of two rates voided each other's slots at every upload.
-- Returns {status, wait ms, region or "", effective rate in tokens per 1000 s, epoch, 1 if this
-- call re-planned else 0, lateness ms}: status 0 = go now; 1 = the slot `wait` ms from now is
-- reserved for the caller; 2 = nothing reserved, the slot would be `wait` ms away. The epoch
-- (decreases plus re-plans) dates the reservation: after a decrease or a re-plan reserved slots
-- are void. The lateness, burst intervals, is how late the slot may still be used: a send at
-- most that late after its slot keeps the bucket within rate * T + burst + 1 sends in any T
-- (its slot is within burst intervals before it, as a token that goes at once is), so a worker
-- busy when the slot came still uses it rather than taking another (the slot lost).

-- include: lib/limiter.lua

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', KEYS[1], 'tat', 'rate', 'burst', 'w_max', 'last_fail', 'region',
                     'decreases', 'replans', 'plan', 'plan_set')
local made = expiry_first(h[2] or h[3], tonumber(ARGV[6])) -- taken by a full Redis
local rate = tonumber(h[2]) or tonumber(ARGV[1])
local burst = tonumber(h[3]) or tonumber(ARGV[2])
local eff = effective_rate(rate, tonumber(ARGV[5]), h[4], h[5], now)
local interval = 1000000 / eff
local tat = math.max(tonumber(h[1]) or 0, now)
local replans, replanned = tonumber(h[8]) or 0, 0
local plan = tonumber(h[9])
if plan and (eff >= 2 * plan or (eff >= rate and plan < rate) or (h[10] and plan > rate)) then
    tat = replanned_tat(tat, now, burst, plan, eff)
    replans, replanned = replans + 1, 1
    redis.call('HSET', KEYS[1], 'plan', eff, 'replans', replans, 'tat', string.format('%.0f', tat))
    redis.call('HDEL', KEYS[1], 'plan_set')
end
local new_tat = tat + interval * tonumber(ARGV[3])
local wait = new_tat - interval * (burst + 1) - now
local status = 0
if wait > 0 then
    status = 1
    if wait > tonumber(ARGV[4]) * 1000 then
        status = 2
    end
else
    wait = 0
end
if status < 2 then
    redis.call('HSET', KEYS[1], 'tat', string.format('%.0f', new_tat))
end
if made then
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[6]))
end
return {status, math.ceil(wait / 1000), h[6] or '', math.floor(eff * 1000),
        (tonumber(h[7]) or 0) + replans, replanned, math.floor(burst * interval / 1000)}
