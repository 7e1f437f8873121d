-- KEYS: hits   ARGV: window ms
-- Counts a hit; the window starts with the first hit and the count with it.
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
