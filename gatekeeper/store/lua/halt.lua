-- KEYS: halts, owners, journal, pending (all of one agent)
-- ARGV: field, halt record, scope, target, event ('' when journaled elsewhere),
--       request key prefix, channel, now, by, cancel reason
-- Sets the halt, then cancels every pending request it covers, all in one
-- step: no request of a halted scope can be approved in between, and a
-- request created later sees the halt and is refused. (The request keys are
-- derived from the prefix; they share the deployment's hash tag, so this stays
-- one slot.) Returns the ids cancelled.
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local now = clock(ARGV[8])
local owners = redis.call('HGETALL', KEYS[2])
local ids = {}
for i = 1, #owners, 2 do
  local ok, o = pcall(cjson.decode, owners[i + 1])
  local agent, session
  if ok and type(o) == 'table' then
    agent, session = o[1], o[2]
  else  -- written by an older release: "agent\nsession[\ntool]"
    agent, session = string.match(owners[i + 1], '^(.-)\n(.*)\n[^\n]*$')
    if not agent then agent, session = string.match(owners[i + 1], '^(.-)\n(.*)$') end
  end
  if ARGV[3] == 'all' or (ARGV[3] == 'agent' and agent == ARGV[4])
     or (ARGV[3] == 'session' and session == ARGV[4]) then
    table.insert(ids, owners[i])
  end
end
table.sort(ids)
if ARGV[5] ~= '' then
  local ev = cjson.decode(ARGV[5])
  ev.data.pending = ids
  if #ids == 0 then ev.data.pending = nil end
  journal_push(KEYS[3], cjson.encode(ev))
end
local cancelled = {}
for _, id in ipairs(ids) do
  local req_key = ARGV[6] .. id
  local wake_key = req_key .. ':wake'
  local f = fields(req_key)
  if f and f.status == 'pending' then
    if not lapse(f, now, req_key, KEYS[4], KEYS[2], KEYS[3], wake_key, ARGV[7]) then
      redis.call('HSET', req_key, 'status', 'cancelled', 'decided_at', now,
        'decided_by', ARGV[9], 'comment', ARGV[10])
      settle(req_key, KEYS[4], KEYS[2], id, f.risk)
      ended(req_key, f)
      journal_push(KEYS[3], event_json('request.cancelled', now, ARGV[9], f,
        { reason = ARGV[10] }))
      wake(wake_key, ARGV[7], id)
      table.insert(cancelled, id)
    end
  end
end
return cancelled
