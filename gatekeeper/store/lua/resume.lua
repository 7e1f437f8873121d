-- KEYS: halts, resumes, journal   ARGV: field, signed resume, event ('' for none)
-- The resume is written before the halt is lifted: an agent's ACL user, which
-- can't write resumes, fails there, before anything changes.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[1], ARGV[1])
if ARGV[3] ~= '' then journal_push(KEYS[3], ARGV[3]) end
return 1
