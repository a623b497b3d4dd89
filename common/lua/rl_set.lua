-- rl_set.lua: an operator's override of one S3 bucket's limit (`pixq limit set` and `reset`),
-- and the re-plan it asks for.
--
-- KEYS[1] pixq:rl:{<bucket>}   the limiter hash (rl_acquire.lua)
-- ARGV[1] "set" or "reset"
-- ARGV[2] the default rate, tokens/s (the CLI's PIXQ_S3_RATE): the rate without an override
-- ARGV[3] with "set": the rate, tokens/s, as it is to be stored
-- ARGV[4] with "set": the burst
-- ARGV[5] with "reset": idle expiry of the hash, ms (PIXQ_RL_IDLE_TTL_S)
--
-- "set" writes rate and burst and makes the hash persistent; "reset" removes them, and the hash
-- expires when idle again. Slots already reserved were planned at the old rate, up to
-- PIXQ_S3_HORIZON_MS ahead: kept, they would hold a raised bucket at its old pace, or let a
-- lowered one send at its old pace, for as long as they last. So the rate they were planned
-- at goes into `plan` for rl_acquire.lua, whose next call re-plans (voids the reserved slots,
-- counts the backlog again at the new rate; its worker brings the parked uploads forward):
--   lowered: plan = the old rate, above the new one;
--   raised: plan stays what a decrease recorded (the re-plan comes when the rate has climbed
--   to twice it or to the new rate, as after any decrease), else (none, or one above the old
--   rate: left by a plain HSET that lowered it) the old rate, below the new.
-- With no token in use (tat not ahead of now) nothing is planned and `plan` is left as it is.
-- Either way, when there is a plan, `plan_set` marks it as the operator's: rl_acquire.lua
-- re-plans a plan above the rate only then, once (with the CLI's PIXQ_S3_RATE not the
-- workers', a reset the CLI counts as a raise may be a lowering for them; and a plan left above
-- a rate lowered with nothing in use comes down to it, or a later raise would find it in place
-- and re-plan nothing).
-- A burst alone changed needs no re-plan (upload.c uses a held slot at most as late as the
-- burst allows now). Returns {the plan written, or "" when none was; with "reset", how many of
-- rate and burst it removed (0: the bucket had no override of its own), else 0}.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', KEYS[1], 'rate', 'plan', 'tat')
local default = tonumber(ARGV[2])
local old = tonumber(h[1]) or default
local new = default
if ARGV[1] == 'set' then
    new = tonumber(ARGV[3])
end
local plan = tonumber(h[2])
local fields = {}
if (tonumber(h[3]) or 0) > now and (new < old or not plan or plan > old) then
    plan = old
    fields = {'plan', plan}
else
    plan = nil
end
-- plan_set: the plan is the operator's, for rl_acquire.lua's `plan > rate` (once: a plan above
-- the caller's rate otherwise comes from a worker whose PIXQ_S3_RATE is higher, and workers of
-- two rates re-planned each other's plans at every call)
if #fields > 0 or h[2] then
    fields[#fields + 1] = 'plan_set'
    fields[#fields + 1] = '1'
    redis.call('HSET', KEYS[1], unpack(fields))
end
local removed = 0
if ARGV[1] == 'set' then
    redis.call('HSET', KEYS[1], 'rate', ARGV[3], 'burst', ARGV[4])
    redis.call('PERSIST', KEYS[1])
else
    removed = redis.call('HDEL', KEYS[1], 'rate', 'burst')
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
end
return {plan and tostring(plan) or '', removed}
