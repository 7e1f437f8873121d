-- KEYS: req, wake, pending, owners, journal, votes   ARGV: channel, now, by, reason ('' if none)
local now = clock(ARGV[2])
local f = fields(KEYS[1])
if not f then return {'missing'} end
if lapse(f, now, KEYS[1], KEYS[3], KEYS[4], KEYS[5], KEYS[2], ARGV[1]) then
  return {'refused', 'expired', 'cancel', 'it expired before a decision (expiry = deny)'}
end
if f.status == 'cancelled' then return state(KEYS[1], KEYS[6]) end
if f.status ~= 'pending' then return {'refused', f.status, 'cancel', 'it is ' .. f.status} end
local reason = nil
if ARGV[4] ~= '' then reason = ARGV[4] end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'decided_at', now, 'decided_by', ARGV[3])
if reason then redis.call('HSET', KEYS[1], 'comment', reason) end
settle(KEYS[1], KEYS[3], KEYS[4], f.id)
journal_push(KEYS[5], event_json('request.cancelled', now, ARGV[3], f, { reason = reason }))
wake(KEYS[2], ARGV[1], f.id)
return state(KEYS[1], KEYS[6])
