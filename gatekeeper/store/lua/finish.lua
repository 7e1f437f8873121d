-- KEYS: req, wake, journal, votes   ARGV: channel, now, ok (1|0), outcome ('' if none), token
-- executing -> executed | failed; also from outcome_unknown, when the caller
-- that claimed it comes back late with what happened. The claim's token makes
-- a retry after a lost reply idempotent: it gets the recorded outcome back.
local now = clock(ARGV[2])
local f = fields(KEYS[1])
if not f then return {'missing'} end
local same = ARGV[5] ~= '' and redis.call('HGET', KEYS[1], 'claimant') == ARGV[5]
local resolved = nil  -- what a person recorded before this caller came back, if anything
if same and (f.status == 'executed' or f.status == 'failed') then
  if redis.call('HGET', KEYS[1], 'finisher') == ARGV[5] then
    return state(KEYS[1], KEYS[4])  -- its own outcome, asked again after a lost reply
  end
  resolved = f.status
elseif f.status ~= 'executing' and f.status ~= 'outcome_unknown' then
  return {'refused', f.status, 'finish', 'it is ' .. f.status .. ', not executing'}
end
local status, kind = 'failed', 'request.failed'
if ARGV[3] == '1' then status, kind = 'executed', 'request.executed' end
local outcome = nil
if ARGV[4] ~= '' then outcome = ARGV[4] end
redis.call('HSET', KEYS[1], 'status', status, 'finished_at', now, 'finisher', ARGV[5])
local plan = redis.call('HGET', KEYS[1], 'bhv')  -- its concurrency slots are free again
if plan then bhv.apply(string.match(KEYS[1], '^(%b{})'), cjson.decode(plan), 'done', now, 'allow', nil) end
if outcome then redis.call('HSET', KEYS[1], 'outcome', outcome) end
ended(KEYS[1], f)
journal_push(KEYS[3], event_json(kind, now, 'agent:' .. f.agent, f,
  { outcome = outcome, resolved_as = resolved }))
wake(KEYS[2], ARGV[1], f.id)
return state(KEYS[1], KEYS[4])
