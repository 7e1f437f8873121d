-- KEYS: req, wake, pending, owners, journal, votes   ARGV: channel, now, by, reason ('' if none)
local now = clock(ARGV[2])
local f = fields(KEYS[1])
if not f then return {'missing'} end
local lapsed = lapse(f, now, KEYS[1], KEYS[3], KEYS[4], KEYS[5], KEYS[2], ARGV[1])
if lapsed then return {'refused', lapsed, 'cancel', lapse_why(lapsed, f.lease)} end
if f.status == 'cancelled' then return state(KEYS[1], KEYS[6]) end
if f.status ~= 'pending' then return {'refused', f.status, 'cancel', 'it is ' .. f.status} end
local reason = nil
if ARGV[4] ~= '' then reason = ARGV[4] end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'decided_at', now, 'decided_by', ARGV[3])
if reason then redis.call('HSET', KEYS[1], 'comment', reason) end
settle(KEYS[1], KEYS[3], KEYS[4], f.id, f.risk)
ended(KEYS[1], f)
journal_push(KEYS[5], event_json('request.cancelled', now, ARGV[3], f, { reason = reason }))
wake(KEYS[2], ARGV[1], f.id)
return state(KEYS[1], KEYS[6])
