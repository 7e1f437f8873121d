-- KEYS: agents, deployment-wide halts   ARGV: agent
-- Adds the agent to the registry and answers the halts of everything and of
-- sessions in force, for the agent to copy into its own halts. Registering
-- and halting everything both run in this one slot, so a halt either sees
-- the agent (and sets it on the agent's keys) or the agent sees the halt.
redis.call('SADD', KEYS[1], ARGV[1])
return redis.call('HGETALL', KEYS[2])
