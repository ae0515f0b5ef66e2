-- Moves due jobs from the scheduled set to the ready list, at most ARGV[2] at a time (a
-- bounded `unpack`: apalis-redis's own fetch moves every due job at once and fails at 8,000),
-- and rings the doorbell when it moved any.
--
-- KEYS: scheduled set, ready list.
-- ARGV: now (epoch s), most ids to move, doorbell channel.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids > 0 then
  redis.call('RPUSH', KEYS[2], unpack(ids))
  redis.call('ZREM', KEYS[1], unpack(ids))
  redis.call('PUBLISH', ARGV[3], #ids)
end
return #ids
