-- queue_types.lua: included (`-- include: lib/queue_types.lua`) by the scripts that take a
-- payload off a worker's active list and then write to the queue's own keys (finish.lua,
-- requeue.lua, park.lua, reap.lua), by dead_retry.lua, which takes entries off `dead`, and by
-- delay.lua, whose caller reports what it enqueued, and by promote.lua, which takes the due
-- payloads off `delayed` before it pushes them.
--
-- A script's writes before an error stay: a queue key of another type than pixq's (`dead`,
-- `stats`, `delayed`... set by hand or by another program) failed such a script with WRONGTYPE
-- after the payload had left the active list, and the job was lost, or settled without its
-- dead letter or its count. These keys are looked at before anything is written. `types` maps
-- KEYS indexes to the type each must have (a key not passed, or missing, passes). Returns a
-- WRONGTYPE error reply naming the first key of another type, which the worker retries as a
-- Redis refusal (README: a key of the whole queue of another type stops every job of the
-- queue), or nil.
local function queue_key_of_another_type(types)
    for i = 1, #KEYS do
        local want = types[i]
        if want then
            local t = redis.call('TYPE', KEYS[i])['ok']
            if t ~= 'none' and t ~= want then
                return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. t ..
                    ', not a ' .. want .. ': a key of the queue of another type than pixq\'s')
            end
        end
    end
    return nil
end
