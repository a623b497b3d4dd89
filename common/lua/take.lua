-- take.lua: reserve the next entry of a queue whose parked outputs may be past their limit.
--
-- KEYS[1] pixq:{Q}:jobs
-- KEYS[2] pixq:{Q}:active:<worker>
-- KEYS[3] pixq:{Q}:parked            bytes of the queue's parked outputs (park.lua, upload_done.lua)
-- ARGV[1] PIXQ_MAX_PARKED_MB in bytes
-- ARGV[2] RQ_TASK_MARK
-- ARGV[3] RQ_WAKE_TOKEN
--
-- Within the limit the next entry is reserved, whatever it is (as LMOVE). Past it, only one of
-- pixq's own: a parked output's upload, a postback retry, a pill, the wake-up token. Fresh jobs
-- wait, since each would park more; the uploads, which bring the bytes down, go on.
-- Returns {the entry now on KEYS[2] or nil, 1 if the queue is past its limit, else 0}.

if (tonumber(redis.call('GET', KEYS[3])) or 0) > tonumber(ARGV[1]) then
    local head = redis.call('LINDEX', KEYS[1], -1)
    if head and (head:sub(1, #ARGV[2]) == ARGV[2] or head == ARGV[3]) then
        return {redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT'), 1}
    end
    return {false, 1}
end
return {redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT'), 0}
