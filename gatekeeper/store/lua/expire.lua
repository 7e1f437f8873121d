-- KEYS: req, wake, pending, owners, journal, votes   ARGV: channel, now
local now = clock(ARGV[2])
local f = fields(KEYS[1])
if not f then return {'missing'} end
if f.status == 'expired' then return state(KEYS[1], KEYS[6]) end
if f.status ~= 'pending' then return {'refused', f.status, 'expire', 'it is ' .. f.status} end
local lapsed = lapse(f, now, KEYS[1], KEYS[3], KEYS[4], KEYS[5], KEYS[2], ARGV[1])
if not lapsed then return {'refused', f.status, 'expire', 'it has not expired yet'} end
if lapsed ~= 'expired' then return {'refused', lapsed, 'expire', lapse_why(lapsed, f.lease)} end
return state(KEYS[1], KEYS[6])
