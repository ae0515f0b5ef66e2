-- Of the task ids in ARGV, those with no entry anywhere: not ready, not scheduled, not in any
-- registered worker's in-flight set (a dead worker's set is re-queued by apalis-redis itself).
--
-- KEYS: scheduled set, ready list, workers, in-flight prefix.
-- ARGV: task ids.
local present = {}
for _, id in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do present[id] = true end
for _, w in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[4] .. ':' .. w)) do present[id] = true end
end
local missing = {}
for i = 1, #ARGV do
  local id = ARGV[i]
  if not present[id] and not redis.call('ZSCORE', KEYS[1], id) then
    table.insert(missing, id)
  end
end
return missing
