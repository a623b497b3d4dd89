-- limiter.lua: included (`-- include: lib/limiter.lua`) by the scripts of the per-bucket S3
-- limiter (rl_acquire.lua, rl_feedback.lua, rl_show.lua): its rate and its re-planned backlog.

-- The effective rate at `now` (µs): the configured `rate`, or after a throttling answer the
-- CUBIC curve from the decrease (rl_feedback.lua), C = 0.4 and beta = 0.7 as in the AWS SDKs'
-- adaptive mode: `w_max` is the rate before the decrease and `last_fail` the last signal (µs),
-- both as HMGET gives them (false when not set). Never above `rate`, never below `floor`.
local function effective_rate(rate, floor, w_max, last_fail, now)
    local eff = rate
    if w_max and last_fail then
        local w = tonumber(w_max)
        local dt = (now - tonumber(last_fail)) / 1000000
        local k = (w * (1 - 0.7) / 0.4) ^ (1 / 3)
        eff = 0.4 * (dt - k) ^ 3 + w
    end
    return math.min(rate, math.max(floor, eff))
end

-- The bucket's tat (µs) when its rate changes from `old` to `new` (a decrease or a re-plan):
-- the part of the burst window in use at the old rate, counted in tokens, stays in use at the
-- new one; slots reserved beyond the window are dropped (their holders see the epoch change and
-- take new slots at the new rate instead of sending at the old pace).
local function replanned_tat(tat, now, burst, old, new)
    local used = math.min(math.max(tat - now, 0), (burst + 1) * 1000000 / old)
    return now + used * old / new
end

-- The limiter's expiry, as the first write of a call that writes (rl_acquire.lua,
-- rl_feedback.lua): the idle expiry `ttl_ms` renewed, or none at all for an operator's limits
-- (`pinned`: `rate` or `burst` set). Both add nothing, and Redis refuses a script's command that
-- adds data only while the script has written nothing: so a full Redis (maxmemory with
-- noeviction) takes the call's HSETs after it. Refused, every upload went without the bucket's
-- limit while Redis was full (limiter_unavailable), and a SlowDown did not slow the fleet.
-- Returns true when the hash was not there (PEXPIRE did nothing): the caller sets the expiry
-- again once it wrote.
local function expiry_first(pinned, ttl_ms)
    if pinned then
        redis.call('PERSIST', KEYS[1])
        return false
    end
    return redis.call('PEXPIRE', KEYS[1], ttl_ms) == 0
end
