-- KEYS: deployment-wide halts   ARGV: field, signed resume
-- Lifts a halt of everything or of a session deployment-wide (each agent's
-- copy is lifted by resume.lua, with the signed resume beside it).
return redis.call('HDEL', KEYS[1], ARGV[1])
