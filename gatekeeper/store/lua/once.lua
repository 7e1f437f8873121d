-- KEYS: once   ARGV: ttl ms
-- 1 the first time within the ttl, 0 after that.
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 1 end
return 0
