-- upload_done.lua: record how one parked output ended, once.
--
-- KEYS[1] pixq:{Q}:job:<id>
-- KEYS[2] pixq:{Q}:blob:<id>:<n>
-- KEYS[3] optional: pixq:{Q}:parked, where the blob's size is taken off `total` when its entry
--         is there (parked by a worker that counts them; once: the entry goes with it)
-- ARGV[1] n, the output's number
-- ARGV[2] "img" with ARGV[3] the image entry JSON and ARGV[4] the object JSON (uploaded), "obj"
--         with ARGV[4] the object JSON (uploaded, listed in no image entry: a pre_process job's
--         output), or "err" with ARGV[3] the error and ARGV[4] the image_identifier (failed for
--         good)
--
-- The blob is deleted and `pending` goes down by one; the output that takes it to 0 is kept as
-- `last`. Output n recorded already (a task run twice, or run again after a lost answer) changes
-- nothing (but for its blob, dropped while Redis is full: below). Returns the outputs still pending (0: the caller completes the job), -1 if the job
-- hash is gone (expired), -2 when output n was recorded already and the job is complete but
-- not by n: the task of the last output completes it, not this one, or -3 when the job hash holds
-- another type than pixq's (a string set by hand, another program writing under pixq's names):
-- the job's state is lost as if it had expired, and its blob is dropped the same way.

local function drop_blob()
    redis.call('DEL', KEYS[2])
    local size = KEYS[3] and tonumber(redis.call('HGET', KEYS[3], KEYS[2]))
    if size then
        redis.call('HDEL', KEYS[3], KEYS[2])
        redis.call('HINCRBY', KEYS[3], 'total', -size)
    end
end

local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'hash' then
    drop_blob()
    return kind == 'none' and -1 or -3
end
-- The record is the first write: refused by Redis for an ACL or another reason, the call writes
-- nothing and the task runs again with its blob. A full Redis (maxmemory with noeviction) refuses
-- it too, as it refuses a script's command that adds data while the script has written nothing:
-- then the blob goes first (the upload is over, and an output recorded already needs it no more:
-- parking it again clears done:n in the same call), a write that frees, after which Redis takes
-- the record. Refused, the task stranded, and the blob that held Redis full stayed.
-- include: lib/full.lua
local recorded = redis.pcall('HSETNX', KEYS[1], 'done:' .. ARGV[1], ARGV[2])
local dropped = refused_as_full(recorded)
if dropped then
    drop_blob()
    recorded = redis.pcall('HSETNX', KEYS[1], 'done:' .. ARGV[1], ARGV[2])
end
if refusal(recorded) then
    return recorded
end
if recorded == 0 then
    local pending = tonumber(redis.call('HGET', KEYS[1], 'pending'))
    local last = redis.call('HGET', KEYS[1], 'last') -- absent in a hash of an older worker
    if pending == 0 and last and last ~= ARGV[1] then
        return -2
    end
    return pending
end
if ARGV[2] == 'img' then
    redis.call('HSET', KEYS[1], 'img:' .. ARGV[1], ARGV[3], 'obj:' .. ARGV[1], ARGV[4])
elseif ARGV[2] == 'obj' then
    redis.call('HSET', KEYS[1], 'obj:' .. ARGV[1], ARGV[4])
else
    redis.call('HSET', KEYS[1], 'err:' .. ARGV[1], ARGV[3], 'fail:' .. ARGV[1], ARGV[4])
end
if not dropped then
    drop_blob()
end
local pending = redis.call('HINCRBY', KEYS[1], 'pending', -1)
if pending == 0 then
    redis.call('HSET', KEYS[1], 'last', ARGV[1])
end
return pending
