-- KEYS: pending, owners, journal, live (all of one agent)
-- ARGV: request key prefix, channel, now, most to look at
-- What time did to this agent's requests, made visible: a pending one past its
-- expiry is expired, one whose caller's lease ran out is abandoned (or, if it
-- was running, of unknown outcome). Transitions enforce the same at their own
-- time; this is for the requests nobody touches. Returns [id, status, ...] of
-- the ones it changed.
local now = clock(ARGV[3])
local out = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(due) do
  local req_key = ARGV[1] .. id
  local f = fields(req_key)
  if not f then
    redis.call('ZREM', KEYS[4], id)
  else
    local lapsed = lapse(f, now, req_key, KEYS[1], KEYS[2], KEYS[3], req_key .. ':wake', ARGV[2])
    if lapsed then
      table.insert(out, id)
      table.insert(out, lapsed)
    end
    if f.status ~= 'pending' and f.status ~= 'approved' and f.status ~= 'executing' then
      redis.call('ZREM', KEYS[4], id)
    elseif not lapsed then  -- looked at early (its expiry was due, not yet its lease)
      local due = f.lease
      if due == nil then
        redis.call('ZREM', KEYS[4], id)
      else
        if f.status == 'pending' and f.expires and f.expires > now then
          due = math.min(due, f.expires)
        end
        redis.call('ZADD', KEYS[4], due, id)
      end
    end
  end
end
return out
