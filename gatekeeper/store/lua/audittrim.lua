-- KEYS: audit, head   ARGV: entry id, its seq, its hash, its time (ms)
-- Drops the sealed events up to and including that entry (archived by the
-- caller first) and keeps its seq, hash and time as the chain's base, so the
-- events left still verify and readers can say what was trimmed. Only if the
-- entry is there and is what the caller archived; safe to repeat. Answers the
-- number of events dropped (0 when there was nothing to do), or -1 when the
-- entry is not the one named.
local seq = tonumber(ARGV[2])
local base = tonumber(redis.call('HGET', KEYS[2], 'base_seq') or '0')
if seq <= base then return 0 end
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return -1 end
local fields = found[1][2]
local h = nil
for i = 1, #fields, 2 do
  if fields[i] == 'h' then h = fields[i + 1] end
end
if h ~= ARGV[3] then return -1 end
local before = redis.call('XLEN', KEYS[1])
local after = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', 1)
if #after == 0 then
  redis.call('XTRIM', KEYS[1], 'MAXLEN', 0)
else
  redis.call('XTRIM', KEYS[1], 'MINID', after[1][1])
end
redis.call('HSET', KEYS[2], 'base_seq', seq, 'base_hash', ARGV[3], 'base_at', ARGV[4],
  'base_id', ARGV[1])
return before - redis.call('XLEN', KEYS[1])
