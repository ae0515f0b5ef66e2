-- Frees the data and meta of up to ARGV[1] acknowledged jobs (apalis-redis keeps both for
-- ever, about 1 KB a job), unless the job has an entry again (pushed anew since).
--
-- KEYS: done set, data hash, meta prefix, scheduled set, ready list, workers, in-flight prefix.
-- ARGV: most ids to free.
-- Returns how many were freed.
local ids = redis.call('SPOP', KEYS[1], tonumber(ARGV[1]))
if #ids == 0 then return 0 end
local present = {}
for _, id in ipairs(redis.call('LRANGE', KEYS[5], 0, -1)) do present[id] = true end
for _, w in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[7] .. ':' .. w)) do present[id] = true end
end
local swept = 0
for _, id in ipairs(ids) do
  if not present[id] and not redis.call('ZSCORE', KEYS[4], id) then
    redis.call('HDEL', KEYS[2], id)
    redis.call('DEL', KEYS[3] .. ':' .. id)
    swept = swept + 1
  end
end
return swept
