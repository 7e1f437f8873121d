-- KEYS: req, halts, wake, journal, votes   ARGV: channel, now, digest, token
-- The token makes a retry idempotent: a caller whose reply was lost and who
-- claims again with the same token gets its claim back, not a refusal.
local now = clock(ARGV[2])
local f = fields(KEYS[1])
if not f then return {'missing'} end
if f.status ~= 'approved' then
  local shown = f.status
  if shown == 'pending' and now >= f.expires then shown = 'expired' end
  local why = 'it is ' .. shown
  if f.status == 'executing' then
    if ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'claimant') == ARGV[4] then
      return state(KEYS[1], KEYS[5])
    end
    why = 'it was already released (a request runs at most once)'
  end
  return {'refused', f.status, 'release', why}
end
local h = halted(KEYS[2], f.agent, f.session)
if h then return {'halted', h} end
if ARGV[3] ~= f.digest then
  return {'refused', f.status, 'release', 'the arguments to run are not the approved ones'}
end
redis.call('HSET', KEYS[1], 'status', 'executing', 'claimant', ARGV[4])
redis.call('RPUSH', KEYS[4], event_json('request.released', now, 'agent:' .. f.agent, f,
  { args_digest = ARGV[3] }))
wake(KEYS[3], ARGV[1], f.id)
return state(KEYS[1], KEYS[5])
