-- KEYS: journal, audit, head   ARGV: expected head hash, n, seq, then body, hash pairs
-- Moves the first n journal drafts into the chained stream, sealed by the
-- caller, only if nobody sealed since the caller read the head: the chain
-- can't fork however many processes seal at once.
local head = redis.call('HGET', KEYS[3], 'hash') or string.rep('0', 64)
if head ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[2])
for i = 0, n - 1 do
  redis.call('XADD', KEYS[2], '*', 'b', ARGV[4 + 2 * i], 'h', ARGV[5 + 2 * i])
end
redis.call('LTRIM', KEYS[1], n, -1)
redis.call('HSET', KEYS[3], 'seq', ARGV[3], 'hash', ARGV[3 + 2 * n])
return 1
