-- data_lost.lua: included (`-- include: lib/data_lost.lua`) by the scripts that find a reserved
-- payload missing from a worker's active list (adopt.lua, split.lua).
--
-- Whether Redis lost the data the payload was reserved in. pixq:{Q}:epoch holds a random token
-- that a worker writes (SET NX) and reads on each connection, at its first reservation there;
-- `id` is the token it read for this payload, `now` the key's value (GET of the declared key:
-- false when missing). A restart without the data, a failover to a replica that never had it,
-- or a flush lose the token with the reservation: a new one, or none, is there now. A restart
-- from the AOF, or a failover to a replica that had the data, keep both, and a reservation
-- missing there was taken from the worker (reaped), or handled by the same call whose answer
-- was lost. "" (the worker could not read it): not known, taken as the same data.
local function data_lost(now, id)
    return id ~= '' and now ~= id
end
