-- KEYS: halts, journal   ARGV: agent, session, event
local h = halted(KEYS[1], ARGV[1], ARGV[2])
if h then return {'halted', h} end
redis.call('RPUSH', KEYS[2], ARGV[3])
return {'ok'}
