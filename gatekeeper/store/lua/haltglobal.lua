-- KEYS: deployment-wide halts, agents   ARGV: field, record
-- Records a halt of everything or of a session, and answers every registered
-- agent, whose own halts the caller then sets one by one (see register.lua).
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('SMEMBERS', KEYS[2])
