-- KEYS: req, halts, pending, owners, journal, requests, pending by risk
-- ARGV: id, agent, session, tool, call_id, doc, expires, quorum, args, digest, created, event,
--       risk, channel
local h, hf = halted(KEYS[2], ARGV[2], ARGV[3])
if h then return {'halted', h, hf} end
if redis.call('EXISTS', KEYS[1]) == 1 then
  -- The same call retried after a lost reply is already held: nothing to do.
  if redis.call('HGET', KEYS[1], 'call_id') == ARGV[5] then return {'ok'} end
  return {'exists', redis.call('HGET', KEYS[1], 'status')}
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'status', 'pending', 'agent', ARGV[2], 'session', ARGV[3],
  'tool', ARGV[4], 'call_id', ARGV[5], 'doc', ARGV[6], 'expires', ARGV[7], 'quorum', ARGV[8],
  'args', ARGV[9], 'digest', ARGV[10], 'risk', ARGV[13])
redis.call('ZADD', KEYS[3], ARGV[11], ARGV[1])
redis.call('ZADD', KEYS[6], ARGV[11], ARGV[1])
redis.call('ZADD', KEYS[7], ARGV[7], ARGV[1])
-- [agent, session, tool] as JSON: names are agent-controlled and may hold any character.
redis.call('HSET', KEYS[4], ARGV[1], cjson.encode({ARGV[2], ARGV[3], ARGV[4]}))
journal_push(KEYS[5], ARGV[12])
-- Consoles learn of arrivals the way they learn of decisions.
redis.call('PUBLISH', ARGV[14], ARGV[1])
return {'ok'}
