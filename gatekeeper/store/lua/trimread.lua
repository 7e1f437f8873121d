-- KEYS: journal, trimmed   ARGV: sealed cursor, batch
-- The journal's first entry is number `trimmed` (counting every entry ever
-- appended); entries before the sealed cursor are in the chain already and
-- are dropped, then the next batch is answered. Safe to repeat.
local t = tonumber(redis.call('GET', KEYS[2]) or '0')
local c = tonumber(ARGV[1])
if c > t then
  redis.call('LTRIM', KEYS[1], c - t, -1)
  redis.call('SET', KEYS[2], c)
end
return redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
