-- Takes jobs cancelled while queued out of the queue at once. Left in it, a cancelled job's
-- entry waited for a worker's claim to find it cancelled and drop it, and until then it counted
-- as ready everywhere: the queue-depth ceiling (submits refused with fewer jobs waiting than it
-- allows), the autoscaling signal, the queue's statistics. Only an entry no worker holds is
-- taken out (ready or scheduled); one already fetched is left to its claim, which drops it.
--
-- KEYS: data hash, meta prefix, scheduled set, ready list.
-- ARGV: task ids.
-- Returns how many entries were taken out.
local withdrawn = 0
for _, id in ipairs(ARGV) do
  local removed = redis.call('LREM', KEYS[4], 0, id) + redis.call('ZREM', KEYS[3], id)
  if removed > 0 then
    redis.call('HDEL', KEYS[1], id)
    redis.call('DEL', KEYS[2] .. ':' .. id)
    withdrawn = withdrawn + 1
  end
end
return withdrawn
