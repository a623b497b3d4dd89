-- rl_feedback.lua: tell a bucket's shared limit that S3 answered with throttling (503 SlowDown,
-- 429), so that the whole fleet slows down.
--
-- KEYS[1] pixq:rl:{<bucket>}
-- ARGV[1] default rate, tokens/s
-- ARGV[2] cool-down, ms: signals within it of the last decrease are one congestion episode
-- ARGV[3] lowest effective rate, tokens/s: a floor for slowing down, never above the rate itself
-- ARGV[4] default burst (PIXQ_S3_RATE's), as rl_acquire.lua's ARGV[2]
-- ARGV[5] idle expiry of the hash, ms, as rl_acquire.lua's ARGV[6] (set again, as there, unless
--         an operator set the limits)
--
-- The first signal of an episode sets w_max to the current effective rate and last_fail and
-- last_decrease to now; rl_acquire.lua then derives a rate of 0.7 w_max that grows back along the
-- CUBIC curve from last_fail. A signal within the cool-down does not decrease again, but it moves
-- last_fail to now: the rate stays at the bottom of the curve while S3 keeps throttling, and the
-- next signal after the cool-down decreases from there (0.7, 0.49, 0.34... of the first rate).
-- A decrease also drops the slots reserved ahead at the old rate, without refilling the bucket:
-- the tokens left (how far tat lags behind now + (burst + 1) intervals, rl_acquire.lua) stay as
-- many at the new rate, so a drained bucket is left empty at the new rate (tat = now + (burst + 1)
-- new intervals) and the next caller waits one new interval. (tat = now would hand out burst + 1
-- tokens at once: the fleet kept its old pace for seconds after a SlowDown.)
-- The rate planned for is kept in `plan`: rl_acquire.lua re-plans when the rate has climbed back
-- to twice it. The floor is kept in `floor`, for rl_show.lua (`pixq limit show` and `pixq stats`
-- run with a configuration of their own).
-- Returns 1 if the rate was lowered, 0 if the signal fell within the current episode.

-- include: lib/limiter.lua

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', KEYS[1], 'rate', 'w_max', 'last_fail', 'last_decrease', 'burst',
                     'tat')
local made = expiry_first(h[1] or h[5], tonumber(ARGV[5])) -- taken by a full Redis
redis.call('HINCRBY', KEYS[1], 'throttle_signals', 1)
if made then
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
end
if h[4] and now - tonumber(h[4]) < tonumber(ARGV[2]) * 1000 then
    redis.call('HSET', KEYS[1], 'last_fail', string.format('%.0f', now))
    return 0
end
local rate = tonumber(h[1]) or tonumber(ARGV[1])
local eff = effective_rate(rate, tonumber(ARGV[3]), h[2], h[3], now)
-- the rate rl_acquire.lua derives right after this decrease: 0.7 eff, within the same bounds
local new_eff = math.min(rate, math.max(tonumber(ARGV[3]), 0.7 * eff))
local burst = tonumber(h[5]) or tonumber(ARGV[4])
-- slots reserved beyond the burst window are dropped: their holders see `decreases` change
local tat = replanned_tat(tonumber(h[6]) or 0, now, burst, eff, new_eff)
local stamp = string.format('%.0f', now)
redis.call('HSET', KEYS[1], 'w_max', eff, 'last_fail', stamp, 'last_decrease', stamp, 'tat',
           string.format('%.0f', tat), 'plan', new_eff, 'floor', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'decreases', 1)
return 1
