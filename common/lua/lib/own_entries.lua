-- own_entries.lua: included (`-- include: lib/own_entries.lua`) by the scripts that push jobs at
-- the consumer end of `jobs` (promote.lua, reap.lua, split.lua): tools/embed.c puts it in their
-- place at build time, the Lua tests likewise (a script run by EVALSHA cannot load another).
--
-- pixq's own entries (tasks, the wake-up token) at the consumer end of `jobs` stay there: fresh
-- entries pushed at that end go behind them. Past PIXQ_MAX_PARKED_MB only pixq's own entries are
-- taken (take.lua), and a fresh job in front must not hide the uploads that bring it back under.
local function own(e)
    return string.sub(e, 1, 10) == 'pixq-task:' or e == '{"pixq_wake":true}'
end
local function push_behind_own(q, fresh) -- q: the index of `jobs` in KEYS
    if #fresh == 0 then
        return
    end
    local run = 0 -- pixq's own entries at the consumer end, each read once (a job's only once:
    -- a window read at once would copy the jobs past the run too, up to 250 kB each)
    while run < 1000 do
        local e = redis.call('LINDEX', KEYS[q], -run - 1)
        if not e or not own(e) then
            break
        end
        run = run + 1
    end
    local mine = run > 0 and redis.call('RPOP', KEYS[q], run) or {}
    for i = 1, #fresh, 1000 do
        redis.call('RPUSH', KEYS[q], unpack(fresh, i, math.min(i + 999, #fresh)))
    end
    for i = #mine, 1, -1000 do -- back in their order: RPOP gave the nearest first
        local chunk = {}
        for j = i, math.max(i - 999, 1), -1 do
            chunk[#chunk + 1] = mine[j]
        end
        redis.call('RPUSH', KEYS[q], unpack(chunk))
    end
end
