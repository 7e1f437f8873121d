-- KEYS: req, halts, wake, journal, votes, resumes
-- ARGV: channel, now, digest, token, created (ms, as the releasing process holds it; '' if not),
--       behaviour plan of the arguments that run ('' = the one kept at the hold)
-- The token makes a retry idempotent: a caller whose reply was lost and who
-- claims again with the same token gets its claim back, not a refusal.
local now = clock(ARGV[2])
local f = fields(KEYS[1])
if not f then return {'missing'} end
-- Released or closed before, whatever the hash says now: a request runs at most once.
local claimed = redis.call('HGET', claims_key(KEYS[1]), f.id)
if claimed and ARGV[4] ~= '' and claimed == ARGV[4] and f.status == 'executing' then
  return state(KEYS[1], KEYS[5])
end
if claimed and claimed ~= ARGV[4] then
  local why = 'it was already released (a request runs at most once)'
  if claimed == 'abandoned' then why = 'it was abandoned: its caller was gone' end
  if claimed == 'refused' then why = 'it was closed without running' end
  return {'refused', f.status, 'release', why}
end
if f.status == 'approved' then
  local lapsed = lapse(f, now, KEYS[1], KEYS[1], KEYS[1], KEYS[4], KEYS[3], ARGV[1])
  if lapsed then return {'refused', lapsed, 'release', lapse_why(lapsed, f.lease)} end
end
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
-- An approval not yet known to be on the replicas store.durability asked for
-- runs only once it is (the store checks with WAIT, then confirm.lua): one a
-- failover then loses never ran.
local awaiting = redis.call('HGET', KEYS[1], 'awaiting_replicas')
if awaiting then return {'unconfirmed', awaiting} end
local h, hf = halted(KEYS[2], f.agent, f.session)
if h then return {'halted', h, hf} end
-- A request that was already waiting when a halt of its scope was pulled should
-- have been cancelled by it; whatever kept it pending, it is not run after a resume.
if ARGV[5] ~= '' then
  for _, field in ipairs({'all', 'agent:' .. f.agent, 'session:' .. f.session}) do
    local r = redis.call('HGET', KEYS[6], field)
    if r then
      local ok, rec = pcall(cjson.decode, r)
      local at = ok and type(rec) == 'table' and type(rec.body) == 'table' and rec.body.halt_at
      if type(at) == 'number' and at > tonumber(ARGV[5]) then
        return {'refused', f.status, 'release',
          'it was waiting when the kill switch was pulled (' .. field .. '); ask again'}
      end
    end
  end
end
if ARGV[3] ~= f.digest then
  return {'refused', f.status, 'release', 'the arguments to run are not the approved ones'}
end
redis.call('HSET', KEYS[1], 'status', 'executing', 'claimant', ARGV[4])
-- It runs now: its sequences' 'not' steps clear, its limits count it (past
-- them if need be: a person approved it).
local plan = redis.call('HGET', KEYS[1], 'bhv')
if plan and ARGV[6] and ARGV[6] ~= '' then
  plan = ARGV[6]
  redis.call('HSET', KEYS[1], 'bhv', plan)
end
if plan then bhv.apply(string.match(KEYS[1], '^(%b{})'), cjson.decode(plan), 'release', now, 'allow', nil) end
if ARGV[4] ~= '' then mark(KEYS[1], f.id, ARGV[4]) else mark(KEYS[1], f.id, 'released') end
journal_push(KEYS[4], event_json('request.released', now, 'agent:' .. f.agent, f,
  { args_digest = ARGV[3] }))
wake(KEYS[3], ARGV[1], f.id)
return state(KEYS[1], KEYS[5])
