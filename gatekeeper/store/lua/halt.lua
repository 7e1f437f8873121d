-- KEYS: halts, owners, journal   ARGV: field, halt record, scope, target, event
-- Sets the halt and returns the pending requests it covers; the caller cancels
-- each (a request created after this sees the halt and is refused).
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local owners = redis.call('HGETALL', KEYS[2])
local ids = {}
for i = 1, #owners, 2 do
  local agent, session = string.match(owners[i + 1], '^(.-)\n(.*)$')
  if ARGV[3] == 'all' or (ARGV[3] == 'agent' and agent == ARGV[4])
     or (ARGV[3] == 'session' and session == ARGV[4]) then
    table.insert(ids, owners[i])
  end
end
table.sort(ids)
local ev = cjson.decode(ARGV[5])
ev.data.pending = ids
if #ids == 0 then ev.data.pending = nil end
local text = cjson.encode(ev)
redis.call('RPUSH', KEYS[3], text)
return ids
