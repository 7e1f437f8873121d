-- KEYS: audit, head   ARGV: expected head hash, n, seq, journal cursor field,
--       expected cursor, then body, hash pairs
-- Appends n sealed drafts of one journal to the chained stream, only if
-- nobody sealed since the caller read the head and that journal's cursor:
-- the chain can't fork, and no draft is sealed twice, however many
-- processes seal at once. The journal itself (another slot) is trimmed up to
-- the cursor by trimread.lua afterwards.
local head = redis.call('HGET', KEYS[2], 'hash') or string.rep('0', 64)
if head ~= ARGV[1] then return 0 end
local cursor = tonumber(redis.call('HGET', KEYS[2], ARGV[4]) or '0')
if cursor ~= tonumber(ARGV[5]) then return 0 end
local n = tonumber(ARGV[2])
for i = 0, n - 1 do
  redis.call('XADD', KEYS[1], '*', 'b', ARGV[6 + 2 * i], 'h', ARGV[7 + 2 * i])
end
redis.call('HSET', KEYS[2], 'seq', ARGV[3], 'hash', ARGV[5 + 2 * n], ARGV[4], cursor + n)
return 1
