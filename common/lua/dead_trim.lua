-- dead_trim.lua: drop the dead letters past PIXQ_DEAD_MAX_AGE_S from the old end of the dead
-- list, a few a call. finish.lua trims by age only as a job dies (and reap.lua by count only, as
-- it buries a pill): every worker's reap pass calls this, so that the age bound holds in a queue
-- where nothing dies for months.
--
-- KEYS[1] pixq:{Q}:dead
-- ARGV[1] oldest dead entry kept, ms of age
-- ARGV[2] most entries dropped in one call
--
-- Looks at the tail only, as finish.lua's trim does (lib/dead_age.lua): it stops at the first
-- entry young enough, or one it cannot date. A KEYS[1] of another type than a list (set by
-- hand) is left alone.
--
-- Returns the number of entries dropped.

-- include: lib/dead_age.lua

if redis.call('TYPE', KEYS[1])['ok'] ~= 'list' then
    return 0
end
return trim_dead_by_age(1, tonumber(ARGV[1]), tonumber(ARGV[2]))
