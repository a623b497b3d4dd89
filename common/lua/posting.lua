-- posting.lua: whether a worker posts a job's outcome back, asked right before it posts.
--
-- KEYS[1] pixq:{Q}:active:<worker>   the list the worker reserved its payload into
-- KEYS[2] pixq:{Q}:job:<id>          the job's postback bookkeeping
-- ARGV[1] the payload the worker holds (the job, its last parked upload, or a postback retry)
-- ARGV[2] the digest of the postback about to be sent
--
-- Returns 0 when the payload is no longer on the worker's active list: its lease was lost and the
-- job went back to the queue, so the run that has it now posts (a stale run must not post an
-- outcome, nor mark one posted, that a later run may contradict). 1 when this very postback was
-- delivered already: `posted` holds its digest, written by the finish.lua of a run that posted it,
-- whether or not the job was still that run's (a run whose lease was lost while its postback
-- was on its way: the live run need not post the same again), or the job was pushed again
-- unchanged. A run killed between its postback and its settlement wrote nothing: its rerun
-- posts again (at least once). 2 to post. 3 to post when the payload is not on the list and the
-- job's hash (written by begin.lua when the run began) is gone too: Redis lost the job
-- (restarted without its data, failed over to a replica that never had it, flushed), no other
-- run has it, and this run is its only chance of a postback (finish.lua's "forgotten").

if not redis.call('LPOS', KEYS[1], ARGV[1]) then
    if redis.call('EXISTS', KEYS[2]) == 0 then
        return 3
    end
    return 0
end
if redis.call('HGET', KEYS[2], 'posted') == ARGV[2] then
    return 1
end
return 2
