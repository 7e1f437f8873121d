-- KEYS: audit, head, event ids
-- ARGV: expected head hash, n, seq, m, then m triples (cursor field, expected cursor,
--       drafts taken from that journal), then n body, hash pairs, then now (ms),
--       the id window (ms) and the ids of the events sealed (those that have one)
-- Appends n sealed drafts (of one or two journals, merged in time order) to the
-- chained stream, only if nobody sealed since the caller read the head and
-- those journals' cursors: the chain can't fork, and no draft is sealed twice,
-- however many processes seal at once. The journals themselves (another slot)
-- are trimmed up to their cursors by trimread.lua afterwards.
local head = redis.call('HGET', KEYS[2], 'hash') or string.rep('0', 64)
if head ~= ARGV[1] then return 0 end
local m = tonumber(ARGV[4])
for i = 0, m - 1 do
  local cursor = tonumber(redis.call('HGET', KEYS[2], ARGV[5 + 3 * i]) or '0')
  if cursor ~= tonumber(ARGV[6 + 3 * i]) then return 0 end
end
local n = tonumber(ARGV[2])
local base = 5 + 3 * m
for i = 0, n - 1 do
  redis.call('XADD', KEYS[1], '*', 'b', ARGV[base + 2 * i], 'h', ARGV[base + 1 + 2 * i])
end
if n > 0 then  -- a batch of nothing but repeats advances the cursors only
  redis.call('HSET', KEYS[2], 'seq', ARGV[3], 'hash', ARGV[base + 2 * n - 1])
end
-- Remember the ids sealed, so a draft written twice (a retried write) is chained once.
local now = tonumber(ARGV[base + 2 * n])
local window = tonumber(ARGV[base + 2 * n + 1])
for i = base + 2 * n + 2, #ARGV do
  redis.call('ZADD', KEYS[3], now, ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
for i = 0, m - 1 do
  redis.call('HSET', KEYS[2], ARGV[5 + 3 * i], tonumber(ARGV[6 + 3 * i]) + tonumber(ARGV[7 + 3 * i]))
end
return 1
