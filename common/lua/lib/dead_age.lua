-- dead_age.lua: included (`-- include: lib/dead_age.lua`) by finish.lua and dead_trim.lua: drops
-- from the old end of the dead list KEYS[i] (its tail: LPUSH puts the newest at the head) the
-- entries older than `max_age_ms` (PIXQ_DEAD_MAX_AGE_S in ms), dated by their `failed_at` (ms,
-- Redis's clock), at most `most` of them. Only the tail is looked at (LINDEX -1), one entry at a
-- time: the trim stops at the first entry young enough, or one it cannot date (not a JSON object
-- with a numeric `failed_at`: pushed by hand, another program's), which stays with all before it.
-- Returns the number dropped.
local function trim_dead_by_age(i, max_age_ms, most)
    local t = redis.call('TIME')
    local oldest = tonumber(t[1]) * 1000 - max_age_ms
    for n = 0, most - 1 do
        local last = redis.call('LINDEX', KEYS[i], -1)
        local ok, d = pcall(cjson.decode, last or '')
        if not ok or type(d) ~= 'table' or type(d.failed_at) ~= 'number' or
            d.failed_at >= oldest then
            return n
        end
        redis.call('RPOP', KEYS[i])
    end
    return most
end
