-- KEYS: pending, owners, journal, live (all of one agent)
-- ARGV: request key prefix, channel, now, lease (ms from now), then the ids to renew
-- The caller is still there: extend each live request's lease. A lease that
-- already ran out is not revived (the request is abandoned, or its outcome
-- unknown), so every process reads one history. Returns [id, status, ...].
local now = clock(ARGV[3])
local lease = now + tonumber(ARGV[4])
local out = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local req_key = ARGV[1] .. id
  local f = fields(req_key)
  if f then
    local lapsed = lapse(f, now, req_key, KEYS[1], KEYS[2], KEYS[3], req_key .. ':wake', ARGV[2])
    if not lapsed and (f.status == 'pending' or f.status == 'approved'
        or f.status == 'executing') then
      redis.call('HSET', req_key, 'lease', lease)
      local due = lease
      if f.status == 'pending' and f.expires then due = math.min(lease, f.expires) end
      redis.call('ZADD', KEYS[4], due, id)
    end
    table.insert(out, id)
    table.insert(out, f.status)
  end
end
return out
