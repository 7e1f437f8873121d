-- KEYS: journal, trimmed   ARGV: sealed cursor, batch, largest entry, most bytes
-- The journal's first entry is number `trimmed` (counting every entry ever
-- appended); entries before the sealed cursor are in the chain already and
-- are dropped, then the next batch is answered: at most `batch` entries and
-- `most bytes` (always at least one). An entry over `largest entry` bytes is
-- answered as "\0oversize:LEN:SHA1", never whole. Safe to repeat.
local t = tonumber(redis.call('GET', KEYS[2]) or '0')
local c = tonumber(ARGV[1])
if c > t then
  redis.call('LTRIM', KEYS[1], c - t, -1)
  redis.call('SET', KEYS[2], c)
end
local out, total = {}, 0
local largest, most = tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 0, tonumber(ARGV[2]) - 1 do
  local item = redis.call('LINDEX', KEYS[1], i)
  if not item then break end
  if #item > largest then
    item = '\0oversize:' .. #item .. ':' .. redis.sha1hex(item)
  end
  if #out > 0 and total + #item > most then break end
  total = total + #item
  table.insert(out, item)
end
return out
