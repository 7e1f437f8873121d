-- KEYS: req, wake, votes
-- ARGV: channel
-- The approval is on the replicas store.durability asks for (the caller saw
-- WAIT acknowledge a write it made after reading it): it may run now. Either
-- side confirms — the decider after its own WAIT, the waiting agent after its
-- own — so a decider gone between the decision and this step strands nothing.
local f = fields(KEYS[1])
if not f then return {'missing'} end
if redis.call('HDEL', KEYS[1], 'awaiting_replicas') == 1 then wake(KEYS[2], ARGV[1], f.id) end
return state(KEYS[1], KEYS[3])
