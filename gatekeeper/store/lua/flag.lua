-- KEYS: req, wake, journal   ARGV: channel, why, event
-- A release was refused as tampering: the request says so, the journal has it.
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'tampering', ARGV[2])
end
journal_push(KEYS[3], ARGV[3])
redis.call('PUBLISH', ARGV[1], redis.call('HGET', KEYS[1], 'id') or '')
return 1
