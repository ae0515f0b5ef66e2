-- Gives back what a worker that ended (apalis-redis ends a worker on any Redis error) had
-- claimed, at once rather than after the orphan window, and unregisters it, from the leader's
-- record of workers seen too (it stopped, it did not die: the dashboard lists only the silent
-- ones). Entries whose
-- data is missing are dropped: apalis-redis's fetch fails on them, and re-queueing them would
-- end the next worker too (a crash loop across the fleet). Ids in ARGV[3..] are still being
-- run by this process and are only forgotten. Re-queued jobs ring the doorbell.
--
-- KEYS: the worker's in-flight set, workers, ready list, data hash, meta prefix, scheduled set,
--       workers seen.
-- ARGV: worker name, doorbell channel, ids to leave out.
-- Returns {re-queued, dropped}.
local keep = {}
for i = 3, #ARGV do keep[ARGV[i]] = true end
local listed = {}
for _, id in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do listed[id] = true end
local requeued, dropped = 0, 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not keep[id] then
    local meta = KEYS[5] .. ':' .. id
    if redis.call('HEXISTS', KEYS[4], id) == 1 then
      if not listed[id] and not redis.call('ZSCORE', KEYS[6], id) then
        redis.call('DEL', meta)
        redis.call('HSET', meta, 'attempts', 0, 'max_attempts', 25, 'status', 'Pending')
        redis.call('RPUSH', KEYS[3], id)
        listed[id] = true
        requeued = requeued + 1
      end
    else
      redis.call('DEL', meta)
      dropped = dropped + 1
    end
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[7], ARGV[1])
if requeued > 0 then
  redis.call('PUBLISH', ARGV[2], requeued)
end
return {requeued, dropped}
