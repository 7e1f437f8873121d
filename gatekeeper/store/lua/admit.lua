-- KEYS: halts, journal   ARGV: agent, session, event, plan ('' = none), verdict, now
local h, hf = halted(KEYS[1], ARGV[1], ARGV[2])
if h then return {'halted', h, hf} end
local shadows = nil
if ARGV[4] ~= '' then
  -- Sequences and limits: a hit stricter than the verdict escalates the call,
  -- and then nothing of it is recorded here (the caller holds or refuses it).
  -- Hits of shadow-mode entries come back for the caller to record.
  local hits, escalated = bhv.apply(string.match(KEYS[1], '^(%b{})'), cjson.decode(ARGV[4]),
    'admit', clock(ARGV[6]), ARGV[5], nil)
  if escalated then return {'escalate', bhv.encode(hits)} end
  if #hits > 0 then shadows = bhv.encode(hits) end
end
journal_push(KEYS[2], ARGV[3])
if shadows then return {'ok', shadows} end
return {'ok'}
