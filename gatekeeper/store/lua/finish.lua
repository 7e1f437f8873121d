-- KEYS: req, wake, journal, votes   ARGV: channel, now, ok (1|0), outcome ('' if none)
local now = clock(ARGV[2])
local f = fields(KEYS[1])
if not f then return {'missing'} end
if f.status ~= 'executing' then
  return {'refused', f.status, 'finish', 'it is ' .. f.status .. ', not executing'}
end
local status, kind = 'failed', 'request.failed'
if ARGV[3] == '1' then status, kind = 'executed', 'request.executed' end
local outcome = nil
if ARGV[4] ~= '' then outcome = ARGV[4] end
redis.call('HSET', KEYS[1], 'status', status, 'finished_at', now)
if outcome then redis.call('HSET', KEYS[1], 'outcome', outcome) end
journal_push(KEYS[3], event_json(kind, now, 'agent:' .. f.agent, f, { outcome = outcome }))
wake(KEYS[2], ARGV[1], f.id)
return state(KEYS[1], KEYS[4])
