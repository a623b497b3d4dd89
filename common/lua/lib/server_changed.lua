-- server_changed.lua: included (`-- include: lib/server_changed.lua`) by the scripts that find a
-- reserved payload missing from a worker's active list (adopt.lua, split.lua).
--
-- Whether the server running the script is not the one whose run_id is `id` (INFO server's: a
-- new one at every start, another server's after a failover). `id` is what the worker read on
-- the connection it reserved the payload on: a different server lost the reservation with its
-- data, where the same server's list lost it to a reap. "" (the worker could not read it) or a
-- server that refuses INFO: not known, taken as the same server, as before run_ids were compared.
local function server_changed(id)
    if id == '' then
        return false
    end
    local info = redis.pcall('INFO', 'server')
    local now = type(info) == 'string' and string.match(info, 'run_id:(%x+)')
    return type(now) == 'string' and now ~= id
end
