-- KEYS: req, halts, pending, owners, journal
-- ARGV: id, agent, session, tool, call_id, doc, expires, quorum, args, digest, created, event
local h = halted(KEYS[2], ARGV[2], ARGV[3])
if h then return {'halted', h} end
if redis.call('EXISTS', KEYS[1]) == 1 then
  -- The same call retried after a lost reply is already held: nothing to do.
  if redis.call('HGET', KEYS[1], 'call_id') == ARGV[5] then return {'ok'} end
  return {'exists', redis.call('HGET', KEYS[1], 'status')}
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'status', 'pending', 'agent', ARGV[2], 'session', ARGV[3],
  'tool', ARGV[4], 'call_id', ARGV[5], 'doc', ARGV[6], 'expires', ARGV[7], 'quorum', ARGV[8],
  'args', ARGV[9], 'digest', ARGV[10])
redis.call('ZADD', KEYS[3], ARGV[11], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2] .. '\n' .. ARGV[3])
redis.call('RPUSH', KEYS[5], ARGV[12])
return {'ok'}
