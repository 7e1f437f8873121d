-- KEYS: req, wake, journal, votes, seen   ARGV: channel, now, by, ran (1|0), comment ('' if none)
-- outcome_unknown -> executed | failed: a person looked and says whether the
-- tool ran. The deciding side's alone, as a vote is.
if not redis.acl_check_cmd('SADD', KEYS[5], 'x') then return {'forbidden'} end
local now = clock(ARGV[2])
local f = fields(KEYS[1])
if not f then return {'missing'} end
if f.status == 'executing' then  -- a lease that ran out meanwhile: it is unknown now
  lapse(f, now, KEYS[1], KEYS[1], KEYS[1], KEYS[3], KEYS[2], ARGV[1])
end
if f.status ~= 'outcome_unknown' then
  return {'refused', f.status, 'resolve',
    'it is ' .. f.status .. '; only a request whose outcome is unknown is resolved'}
end
local status, outcome = 'failed', 'a person says it did not run'
if ARGV[4] == '1' then status, outcome = 'executed', 'a person says it ran' end
local comment = nil
if ARGV[5] ~= '' then comment = ARGV[5]; outcome = ARGV[5] end
redis.call('HSET', KEYS[1], 'status', status, 'finished_at', now, 'outcome', outcome)
ended(KEYS[1], f)
journal_push(KEYS[3], event_json('request.resolved', now, 'approver:' .. ARGV[3], f,
  { ran = ARGV[4] == '1', comment = comment }))
wake(KEYS[2], ARGV[1], f.id)
return state(KEYS[1], KEYS[4])
