-- KEYS: halts, journal   ARGV: agent, session, event
local h, hf = halted(KEYS[1], ARGV[1], ARGV[2])
if h then return {'halted', h, hf} end
journal_push(KEYS[2], ARGV[3])
return {'ok'}
