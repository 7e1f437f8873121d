-- KEYS: req, halts, pending, owners, journal, requests, pending by risk, live, call key,
--       where (optional: the deployment-wide id -> agent map, passed where it shares a
--       node with the agent's keys, i.e. not on a cluster, where the client claims it first)
-- ARGV: id, agent, session, tool, call_id, doc, expires, quorum, args, digest, created, event,
--       risk, channel, now, lease (ms from now, '' = none), retain (ms, '' = keep), call digest,
--       has key (1|0), key ttl (ms), behaviour plan ('' = none; applied at the claim)
local h, hf = halted(KEYS[2], ARGV[2], ARGV[3])
if h then return {'halted', h, hf} end
if redis.call('EXISTS', KEYS[1]) == 1 then
  -- The same call retried after a lost reply is already held: nothing to do.
  if redis.call('HGET', KEYS[1], 'call_id') == ARGV[5] then return {'attached', ARGV[1]} end
  return {'exists', redis.call('HGET', KEYS[1], 'status')}
end
local now = clock(ARGV[15])
local lease = nil
if ARGV[16] ~= '' then lease = now + tonumber(ARGV[16]) end
-- The same call made again (a restarted agent, a resumed run) under its key:
-- re-attach to the request it made before instead of asking the people twice.
if ARGV[19] == '1' then
  local old = redis.call('HGET', KEYS[9], 'id')
  if old then
    local old_key = string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[1]) .. old
    local of = fields(old_key)
    if of then
      lapse(of, now, old_key, KEYS[3], KEYS[4], KEYS[5], old_key .. ':wake', ARGV[14])
      if of.tool ~= ARGV[4] or of.cdigest ~= ARGV[18] then
        return {'conflict', old, of.status}
      end
      if of.status == 'pending' or of.status == 'approved' then
        if lease then
          redis.call('HSET', old_key, 'lease', lease)
          local due = lease
          if of.status == 'pending' and of.expires then due = math.min(lease, of.expires) end
          redis.call('ZADD', KEYS[8], due, old)
        end
        return {'attached', old}
      end
      if of.status ~= 'expired' and of.status ~= 'cancelled' and of.status ~= 'abandoned' then
        return {'attached', old}  -- ended with an answer, or ran: the same answer again
      end
    end
  end
end
-- The id is claimed only for a request made here (not one re-attached to).
if KEYS[10] and redis.call('HSETNX', KEYS[10], ARGV[1], ARGV[2]) == 0
    and redis.call('HGET', KEYS[10], ARGV[1]) ~= ARGV[2] then
  return {'exists', ''}  -- another agent's request has this id
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'status', 'pending', 'agent', ARGV[2], 'session', ARGV[3],
  'tool', ARGV[4], 'call_id', ARGV[5], 'doc', ARGV[6], 'expires', ARGV[7], 'quorum', ARGV[8],
  'args', ARGV[9], 'digest', ARGV[10], 'risk', ARGV[13], 'cdigest', ARGV[18])
if lease then
  redis.call('HSET', KEYS[1], 'lease', lease)
  -- Scored by when the sweep must look: the lease, or the expiry if that comes first.
  redis.call('ZADD', KEYS[8], math.min(lease, tonumber(ARGV[7])), ARGV[1])
end
if ARGV[17] ~= '' then redis.call('HSET', KEYS[1], 'retain', ARGV[17]) end
if ARGV[21] ~= '' then redis.call('HSET', KEYS[1], 'bhv', ARGV[21]) end
if ARGV[19] == '1' then
  redis.call('HSET', KEYS[9], 'id', ARGV[1])
  redis.call('PEXPIRE', KEYS[9], ARGV[20])
  redis.call('HSET', KEYS[1], 'kmap', KEYS[9])
end
redis.call('ZADD', KEYS[3], ARGV[11], ARGV[1])
redis.call('ZADD', KEYS[6], ARGV[11], ARGV[1])
redis.call('ZADD', KEYS[7], ARGV[7], ARGV[1])
-- [agent, session, tool] as JSON: names are agent-controlled and may hold any character.
redis.call('HSET', KEYS[4], ARGV[1], cjson.encode({ARGV[2], ARGV[3], ARGV[4]}))
journal_push(KEYS[5], ARGV[12])
-- Consoles learn of arrivals the way they learn of decisions.
redis.call('PUBLISH', ARGV[14], ARGV[1])
return {'ok'}
