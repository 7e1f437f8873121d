-- KEYS: idx:requests (of one agent)   ARGV: created before (ms), offset, count
-- What is left of requests whose record expired (store.retention after they
-- ended): their signed votes, their claim mark and their index entry. Looks at
-- `count` requests created before the cut-off, from `offset` (those still
-- there are skipped: the caller moves the offset past them). Answers the ids
-- removed; the caller drops them from the deployment's `where` too.
local tag = string.match(KEYS[1], '^(%b{})')
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1],
  'LIMIT', tonumber(ARGV[2]), tonumber(ARGV[3]))
local gone = {}
for _, id in ipairs(ids) do
  if redis.call('EXISTS', tag .. ':req:' .. id) == 0 then
    local dec = tag .. ':dec:' .. id
    redis.call('DEL', dec .. ':voters', dec .. ':votes', dec .. ':seen')
    redis.call('HDEL', tag .. ':claims', id)
    redis.call('ZREM', KEYS[1], id)
    table.insert(gone, id)
  end
end
return {#ids, gone}
