-- KEYS: req, wake, journal, votes   ARGV: channel, now, why
-- approved -> failed without running: the agent refused the release (the
-- store's word was not what the deciders signed). No `released` event: it never ran.
local now = clock(ARGV[2])
local f = fields(KEYS[1])
if not f then return {'missing'} end
local lapsed = nil
if f.status == 'approved' then
  lapsed = lapse(f, now, KEYS[1], KEYS[1], KEYS[1], KEYS[3], KEYS[2], ARGV[1])
end
if lapsed then return {'refused', lapsed, 'refuse', lapse_why(lapsed, f.lease)} end
if f.status ~= 'approved' then
  return {'refused', f.status, 'refuse', 'it is ' .. f.status .. ', not approved'}
end
redis.call('HSET', KEYS[1], 'status', 'failed', 'finished_at', now, 'outcome', ARGV[3])
mark(KEYS[1], f.id, 'refused')
ended(KEYS[1], f)
journal_push(KEYS[3], event_json('request.failed', now, 'agent:' .. f.agent, f,
  { outcome = ARGV[3] }))
wake(KEYS[2], ARGV[1], f.id)
return state(KEYS[1], KEYS[4])
