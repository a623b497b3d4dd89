-- parked_forget.lua: forget the parked outputs whose blob is gone without upload_done.lua: it
-- expired unsent, its task went to dead (a pill) and was purged, or a worker that does not count
-- parked bytes (an older build, during an upgrade) uploaded it. Without this their bytes would
-- stay counted, and a queue past PIXQ_MAX_PARKED_MB would take no new job for good.
--
-- KEYS[1] pixq:{Q}:parked
-- KEYS[2..] blob keys counted in KEYS[1] (a worker lists them with HSCAN, a few at a time);
--           another field of KEYS[1] (`total`, `scanned_at`) passed by mistake is left alone
--
-- Returns the number forgotten.

local n = 0
for i = 2, #KEYS do
    local size = string.find(KEYS[i], ':blob:', 1, true) and
                     tonumber(redis.call('HGET', KEYS[1], KEYS[i]))
    if size and redis.call('EXISTS', KEYS[i]) == 0 then
        redis.call('HDEL', KEYS[1], KEYS[i])
        redis.call('HINCRBY', KEYS[1], 'total', -size)
        n = n + 1
    end
end
return n
