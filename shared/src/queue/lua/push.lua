-- Our push, replacing apalis-redis's. Its `batch_push.lua` writes nothing when the task id
-- already has data (`HSETNX`), and data is never deleted: pushing a job a second time (a
-- retry, a hand-back, the reconciler) was silently a no-op. This one (re)writes the payload
-- and a clean meta hash, and gives the job at most one entry: nothing is pushed while the job
-- is ready, scheduled (only moved earlier) or in a registered worker's in-flight set (except
-- the pushing worker's own, which is about to acknowledge its delivery). Due jobs go straight
-- to the ready list, so the scheduled set only ever holds delayed retries. A job made ready
-- rings the doorbell (a PUBLISH), so an idle worker fetches it at once.
--
-- KEYS: data hash, meta prefix, scheduled set, ready list, workers, in-flight prefix.
-- ARGV: task id, payload, run-at (epoch s), now (epoch s), worker to ignore ('' for none),
--       doorbell channel.
-- Returns 0 (pushed), 1 (already waiting) or 2 (held by a worker).
local id = ARGV[1]
local run_at = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local score = redis.call('ZSCORE', KEYS[3], id)
if score then
  if run_at < tonumber(score) then
    redis.call('ZADD', KEYS[3], run_at, id)
  end
  return 1
end
if redis.call('LPOS', KEYS[4], id) then
  return 1
end
for _, w in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
  if w ~= ARGV[5] and redis.call('SISMEMBER', KEYS[6] .. ':' .. w, id) == 1 then
    return 2
  end
end
local meta = KEYS[2] .. ':' .. id
redis.call('HSET', KEYS[1], id, ARGV[2])
redis.call('DEL', meta)
redis.call('HSET', meta, 'attempts', 0, 'max_attempts', 25, 'status', 'Pending')
if run_at > now then
  redis.call('ZADD', KEYS[3], run_at, id)
else
  redis.call('RPUSH', KEYS[4], id)
  redis.call('PUBLISH', ARGV[6], 1)
end
return 0
