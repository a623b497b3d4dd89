-- rl_show.lua: one bucket's limiter state, read only (`pixq limit show`).
--
-- KEYS[1] pixq:rl:{<bucket>}
-- ARGV[1] default rate, tokens/s
-- ARGV[2] default burst
-- ARGV[3] lowest effective rate, tokens/s: a floor for slowing down, never above the rate itself;
--         the workers' own (`floor`, written by rl_feedback.lua at a decrease) when it is there
--
-- Returns {configured rate * 1000, burst, effective rate * 1000, reserved backlog ms (tat - now:
-- how far ahead the slots are taken; an upload waits only for what passes burst intervals),
-- throttle_signals, decreases, region or "", 1 if the rate or burst is an operator override
-- else 0, replans}.

-- include: lib/limiter.lua

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', KEYS[1], 'tat', 'rate', 'burst', 'w_max', 'last_fail', 'region',
                     'throttle_signals', 'decreases', 'replans', 'floor')
local rate = tonumber(h[2]) or tonumber(ARGV[1])
local burst = tonumber(h[3]) or tonumber(ARGV[2])
local eff = effective_rate(rate, tonumber(h[10]) or tonumber(ARGV[3]), h[4], h[5], now)
local backlog = math.max(0, (tonumber(h[1]) or 0) - now)
local override = 0
if h[2] or h[3] then
    override = 1
end
return {math.floor(rate * 1000), burst, math.floor(eff * 1000), math.floor(backlog / 1000),
        tonumber(h[7]) or 0, tonumber(h[8]) or 0, h[6] or '', override, tonumber(h[9]) or 0}
