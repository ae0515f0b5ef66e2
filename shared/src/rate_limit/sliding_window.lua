-- One request against a sliding window of one minute (or ARGV[1] ms), atomically, for every API
-- replica at once: the ZSET holds the times of the requests accepted in the window.
-- KEYS[1]: the window's ZSET.
-- ARGV[1]: window length, ms. ARGV[2]: the limit. ARGV[3]: a member unique to this request.
-- Returns {accepted (1/0), remaining, ms until the oldest request leaves the window}.
-- The clock is the Redis server's, so replicas with skewed clocks still agree.
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
local accepted = 0
if used < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  used = used + 1
  accepted = 1
end
redis.call('PEXPIRE', KEYS[1], window)
local wait = 0
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if oldest[2] then
  wait = math.max(0, tonumber(oldest[2]) + window - now)
end
return {accepted, limit - used, wait}
