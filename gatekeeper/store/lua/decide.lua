-- KEYS: req, voters, votes, seen, wake, pending, owners, journal
-- ARGV: channel, now, approver, approve (1|0|r: respond), digest, decision, edited args ('' if none),
--       replicas an approval must reach before it runs ('' or '0': none; see confirm.lua)
-- Deciding is the deciding side's alone: refuse before writing anything.
if not redis.acl_check_cmd('SADD', KEYS[4], 'x') then return {'forbidden'} end
local now = clock(ARGV[2])
local f = fields(KEYS[1])
if not f then return {'missing'} end
local approve = ARGV[4] == '1'
local respond = ARGV[4] == 'r'
local action = approve and 'approve' or (respond and 'respond' or 'deny')
local lapsed = lapse(f, now, KEYS[1], KEYS[6], KEYS[7], KEYS[8], KEYS[5], ARGV[1])
if lapsed then return {'refused', lapsed, action, lapse_why(lapsed, f.lease)} end
local d = cjson.decode(ARGV[6])
local mark = ARGV[3] .. '\t' .. ARGV[4] .. '\t' .. ARGV[5]
if respond then
  -- a repeat only with the same words: another answer by the same person is refused
  mark = mark .. '\t' .. redis.sha1hex(tostring(d.response))
end
local repeated = redis.call('SISMEMBER', KEYS[4], mark) == 1
if f.status ~= 'pending' then
  if repeated then return state(KEYS[1], KEYS[3]) end
  return {'refused', f.status, action, 'it is already ' .. f.status}
end
local actor = 'approver:' .. ARGV[3]
if respond then
  -- A person wrote the tool's result: the request ends, nothing runs.
  redis.call('HSET', KEYS[1], 'status', 'responded', 'decided_at', now, 'decided_by', ARGV[3],
    'response', d.response)
  if opt(d.comment) then redis.call('HSET', KEYS[1], 'comment', d.comment) end
  redis.call('RPUSH', KEYS[3], ARGV[6])
  redis.call('SADD', KEYS[4], mark)
  settle(KEYS[1], KEYS[6], KEYS[7], f.id, f.risk)
  ended(KEYS[1], f)
  journal_push(KEYS[8], event_json('request.responded', now, actor, f,
    { response = d.response, comment = opt(d.comment), via = opt(d.via),
      signed = opt(d.signed) }))
  wake(KEYS[5], ARGV[1], f.id)
  return state(KEYS[1], KEYS[3])
end
if not approve then
  redis.call('HSET', KEYS[1], 'status', 'denied', 'decided_at', now, 'decided_by', ARGV[3])
  if opt(d.comment) then redis.call('HSET', KEYS[1], 'comment', d.comment) end
  redis.call('RPUSH', KEYS[3], ARGV[6])
  redis.call('SADD', KEYS[4], mark)
  settle(KEYS[1], KEYS[6], KEYS[7], f.id, f.risk)
  ended(KEYS[1], f)
  journal_push(KEYS[8], event_json('request.denied', now, actor, f,
    { comment = opt(d.comment), via = opt(d.via), signed = opt(d.signed) }))
  wake(KEYS[5], ARGV[1], f.id)
  return state(KEYS[1], KEYS[3])
end
if repeated then return state(KEYS[1], KEYS[3]) end
local raw = nil
if ARGV[5] ~= f.digest then
  if ARGV[7] == '' then
    return {'refused', 'pending', action,
      'its arguments changed since you reviewed them; review them again'}
  end
  -- The approver edited the arguments: only approvals of exactly these
  -- arguments count toward the quorum (as in _machine.decide), so the voters
  -- are rebuilt from the votes cast for this digest.
  redis.call('HSET', KEYS[1], 'args', ARGV[7], 'digest', ARGV[5])
  redis.call('DEL', KEYS[2])
  for _, cast in ipairs(redis.call('LRANGE', KEYS[3], 0, -1)) do
    local v = cjson.decode(cast)
    if v.approve == true and v.args_digest == ARGV[5] then
      redis.call('SADD', KEYS[2], v.approver)
    end
  end
  raw = ARGV[7]
end
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('RPUSH', KEYS[3], ARGV[6])
redis.call('SADD', KEYS[4], mark)
local n = redis.call('SCARD', KEYS[2])
local kind = 'request.vote'
if n >= f.quorum then
  kind = 'request.approved'
  -- Held back from the claim until it is known to be on that many replicas
  -- (store.durability): a failover must not lose an approval whose call ran.
  local replicas = tonumber(ARGV[8] or '')
  local set = {'status', 'approved', 'decided_at', now, 'decided_by', ARGV[3]}
  local unset = {}
  if opt(d.comment) then table.insert(set, 'comment'); table.insert(set, d.comment)
  else table.insert(unset, 'comment') end
  if replicas and replicas > 0 then
    table.insert(set, 'awaiting_replicas'); table.insert(set, replicas)
  else
    table.insert(unset, 'awaiting_replicas')
  end
  redis.call('HSET', KEYS[1], unpack(set))
  if #unset > 0 then redis.call('HDEL', KEYS[1], unpack(unset)) end
  settle(KEYS[1], KEYS[6], KEYS[7], f.id, f.risk)
end
journal_push(KEYS[8], event_json(kind, now, actor, f, { comment = opt(d.comment),
  via = opt(d.via), args_digest = ARGV[5], approvals = n, quorum = f.quorum,
  signed = opt(d.signed) }, raw))
wake(KEYS[5], ARGV[1], f.id)
return state(KEYS[1], KEYS[3])
