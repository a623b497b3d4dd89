-- count.lua: included (`-- include: lib/count.lua`) by begin.lua and reap.lua: one count in the
-- queue's counts (pixq:{Q}:stats), left alone when that key holds another type than pixq's (set
-- by hand, another program), as finish.lua leaves it: no count can be kept there, and failing the
-- call would hold what it does (a job's run, a dead worker's jobs) for a count. Any other error
-- is raised. `i`: the index of that key in KEYS.
local function count_in(i, field)
    local r = redis.pcall('HINCRBY', KEYS[i], field, 1)
    if type(r) == 'table' and r.err and string.sub(r.err, 1, 10) ~= 'WRONGTYPE ' then
        error(r)
    end
end
