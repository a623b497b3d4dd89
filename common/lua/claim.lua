-- claim.lua: claim the job_ids of jobs `pixq submit` is about to enqueue.
--
-- KEYS[1] pixq:{Q}:job:<id>     the first id's job hash
-- KEYS[2] pixq:{Q}:result:<id>  its result
-- KEYS[3..] the same two keys of each further id, in order (KEYS[2i-1], KEYS[2i]: the i-th)
-- ARGV[1]    TTL of the job hash, seconds (PIXQ_RESULT_TTL_S, as workers give it)
--
-- An id is used while the queue knows it: its job hash (a job that ran, or one submitted and
-- still waiting, whose hash this script wrote) or its result. When no id is used, every job hash
-- gets `submitted` (ms, Redis clock) and the TTL. Returns 0 then; otherwise, having written
-- nothing, the position (from 1) of the first used id. A worker's begin.lua
-- later adds `first_seen` and `runs` to the hash and renews its TTL: the first run still counts
-- as received, not as a rerun.

for i = 1, #KEYS, 2 do
    if redis.call('EXISTS', KEYS[i], KEYS[i + 1]) > 0 then
        return (i + 1) / 2
    end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #KEYS, 2 do
    redis.call('HSET', KEYS[i], 'submitted', now)
    redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return 0
