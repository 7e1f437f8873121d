-- KEYS: req, wake, pending, owners, journal, votes   ARGV: channel, now
local now = clock(ARGV[2])
local f = fields(KEYS[1])
if not f then return {'missing'} end
if f.status == 'expired' then return state(KEYS[1], KEYS[6]) end
if f.status ~= 'pending' then return {'refused', f.status, 'expire', 'it is ' .. f.status} end
if now < f.expires then return {'refused', f.status, 'expire', 'it has not expired yet'} end
lapse(f, now, KEYS[1], KEYS[3], KEYS[4], KEYS[5], KEYS[2], ARGV[1])
return state(KEYS[1], KEYS[6])
