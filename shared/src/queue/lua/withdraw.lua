-- Takes jobs cancelled while queued out of the queue at once. Left in it, a cancelled job's
-- entry waited for a worker's claim to find it cancelled and drop it, and until then it counted
-- as ready everywhere: the queue-depth ceiling (submits refused with fewer jobs waiting than it
-- allows), the autoscaling signal, the queue's statistics. Only an entry no worker holds is
-- taken out (ready or scheduled); one already fetched is left to its claim, which drops it.
--
-- A few ids are taken out of the ready list one `LREM` each; many (a sweep's units) in one pass
-- over the list, rebuilt in its order without them: an `LREM` per id walks the whole list each
-- time, and this script holds Redis while it runs (350 ms for 2,000 units beside 7,000 jobs).
--
-- KEYS: data hash, meta prefix, scheduled set, ready list.
-- ARGV: task ids.
-- Returns how many entries were taken out.
local withdrawn = 0
local function forget(id)
  redis.call('HDEL', KEYS[1], id)
  redis.call('DEL', KEYS[2] .. ':' .. id)
  withdrawn = withdrawn + 1
end

local wanted, left = {}, {}
for _, id in ipairs(ARGV) do
  if redis.call('ZREM', KEYS[3], id) == 1 then
    forget(id)
  elseif not wanted[id] then
    wanted[id] = true
    left[#left + 1] = id
  end
end

if #left <= 8 then
  for _, id in ipairs(left) do
    if redis.call('LREM', KEYS[4], 0, id) > 0 then
      forget(id)
    end
  end
  return withdrawn
end

local kept, found = {}, {}
for _, id in ipairs(redis.call('LRANGE', KEYS[4], 0, -1)) do
  if wanted[id] then
    found[id] = true
  else
    kept[#kept + 1] = id
  end
end
if next(found) == nil then
  return withdrawn
end
redis.call('DEL', KEYS[4])
for i = 1, #kept, 1000 do
  redis.call('RPUSH', KEYS[4], unpack(kept, i, math.min(i + 999, #kept)))
end
for id in pairs(found) do
  forget(id)
end
return withdrawn
