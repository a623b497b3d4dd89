-- full.lua: included (`-- include: lib/full.lua`) by heartbeat.lua and upload_done.lua, whose
-- first write is one that adds data, tried through redis.pcall: a full Redis (maxmemory with
-- noeviction) refuses it, as it refuses a script's command that adds data while the script has
-- written nothing; the script then writes what adds nothing (or frees) and tries again, which
-- Redis then takes. `answer`: what redis.pcall gave.

-- The error of a refused command, or nil.
local function refusal(answer)
    return type(answer) == 'table' and answer.err or nil
end

-- Whether the command was refused for want of memory.
local function refused_as_full(answer)
    local err = refusal(answer)
    return err ~= nil and string.sub(err, 1, 4) == 'OOM '
end
