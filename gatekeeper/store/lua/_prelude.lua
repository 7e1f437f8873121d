-- Shared by every gatekeeper script (prepended when the scripts are loaded).
-- Every script touches the keys of one hash tag only -- one agent's {prefix:agent}
-- or the deployment's {prefix} -- so it runs unchanged on Redis Cluster, and
-- under an agent's ACL user each write is checked against that agent's keys.

-- Appends a journal entry as "#N:entry", N from a counter shared by the two
-- journals of one hash tag (an agent's own and the deciders' about it), so the
-- sealer merges them in the order the scripts ran. The counter is derived from
-- the journal's key (same hash tag, so same slot).
local function journal_push(key, entry)
  local n = redis.call('INCR', string.match(key, '^(%b{})') .. ':idx:jseq')
  redis.call('RPUSH', key, '#' .. n .. ':' .. entry)
end

-- The halt in force for this agent and session, and the field it is under.
local function halted(halts_key, agent, session)
  local names = {'all', 'agent:' .. agent, 'session:' .. session}
  local v = redis.call('HMGET', halts_key, names[1], names[2], names[3])
  for i = 1, 3 do
    if v[i] then return v[i], names[i] end
  end
  return nil
end

-- Milliseconds now: the caller's (injected, for tests) clock when it sent
-- one, else this server's, the one clock every process shares.
local function clock(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- An audit draft, as JSON. `raw` (optional) is added verbatim as
-- data.edited_args, so JSON the client built is never re-encoded by cjson; it
-- is placed by building the text around it, never by searching for a marker
-- that agent-controlled text could imitate.
local function event_json(kind, now, actor, f, data, raw)
  local ev = {
    kind = kind, at = now, actor = actor, request_id = f.id, call_id = f.call_id,
    tool = f.tool, agent = f.agent, session_id = f.session, data = data or {}
  }
  if not raw then return cjson.encode(ev) end
  local body = cjson.encode(ev.data)
  if body == '{}' then
    body = '{"edited_args":' .. raw .. '}'
  else
    body = string.sub(body, 1, -2) .. ',"edited_args":' .. raw .. '}'
  end
  ev.data = nil
  local head = cjson.encode(ev)
  return string.sub(head, 1, -2) .. ',"data":' .. body .. '}'
end

local function fields(req_key)
  local v = redis.call('HMGET', req_key, 'id', 'status', 'expires', 'quorum', 'digest',
    'agent', 'session', 'tool', 'call_id', 'lease', 'retain', 'cdigest', 'risk', 'kmap')
  if not v[1] then return nil end
  -- risk and kmap never change after the hold: read here, not again by settle and ended
  -- (false when the request has none).
  return { id = v[1], status = v[2], expires = tonumber(v[3]), quorum = tonumber(v[4]),
    digest = v[5], agent = v[6], session = v[7], tool = v[8], call_id = v[9],
    lease = tonumber(v[10]), retain = tonumber(v[11]), cdigest = v[12], risk = v[13],
    kmap = v[14] }
end

-- The index of an agent's live requests with a lease (scored by when it runs
-- out), named from any key of that agent: same hash tag, same slot.
local function live_key(key)
  return string.match(key, '^(%b{})') .. ':idx:live'
end

-- The request ended: it leaves the live index, and its record expires after
-- the retention it was held with (the audit log is the permanent record).
-- The agent's record of which requests were released or closed without a
-- run, one field each, written once: its ACL user may only HSETNX it (never
-- HSET, HDEL or DEL), so a request's own hash, which the agent can rewrite,
-- can't make a request that ran, or was abandoned, run (again).
local function claims_key(key)
  return string.match(key, '^(%b{})') .. ':claims'
end

local function mark(req_key, id, what)
  redis.call('HSETNX', claims_key(req_key), id, what)
end

-- The request's call key (where its idempotency key names it), or nil. The
-- field is in the request's hash, which the agent may rewrite, and deciders'
-- scripts expire or persist the key it names: only a call key of this
-- request's own agent counts (`{tag}:req:key:` and 32 hex digits, as
-- AgentKeys.call_key makes it), never its halts, claims or the deciders'
-- journal about it. Compared as text: tags may hold pattern characters.
local function call_key(req_key, f)
  local kmap = f.kmap
  if not kmap then return nil end
  local prefix = string.sub(req_key, 1, #req_key - #f.id) .. 'key:'
  if string.sub(req_key, -#f.id) ~= f.id or #kmap ~= #prefix + 32
      or string.sub(kmap, 1, #prefix) ~= prefix
      or not string.match(string.sub(kmap, #prefix + 1), '^%x+$') then
    return nil
  end
  return kmap
end

-- The request ended: it leaves the live index, and its record (and its call
-- key's pointer to it) expires after the retention it was held with (the
-- audit log is the permanent record).
local function ended(req_key, f)
  redis.call('ZREM', live_key(req_key), f.id)
  if f.retain and f.retain > 0 then
    redis.call('PEXPIRE', req_key, f.retain)
    local kmap = call_key(req_key, f)
    if kmap then redis.call('PEXPIRE', kmap, f.retain) end
  end
end

-- Something about this request changed: tell its waiters and the consoles.
-- `channel` is the agent's own, {prefix:agent}:decided: a process waiting on
-- this agent's requests subscribes to it and re-reads the request; processes
-- waiting on other agents hear nothing of it; the consoles hear every agent's
-- through one pattern subscription. A plain PUBLISH, not SPUBLISH: see
-- gatekeeper/store/_wakes.py for why. wake_key stays in the scripts' KEYS but
-- is no longer written (waiting threads used to BLPOP it, one connection each).
local function wake(wake_key, channel, id)
  redis.call('PUBLISH', channel, id)
end

-- The request left pending: drop it from the pending indexes. Its per-risk
-- index `{prefix}:pending:<risk>` is named from the pending key rather than
-- passed in KEYS, so every caller stays as it is; it shares the hash tag, so
-- it lives in the same slot. `risk`: the request's, when the caller read it (nil: read here).
local function settle(req_key, pending_key, owners_key, id, risk)
  redis.call('ZREM', pending_key, id)
  redis.call('HDEL', owners_key, id)
  if risk == nil then risk = redis.call('HGET', req_key, 'risk') end  -- halt.lua's callers
  if risk then redis.call('ZREM', pending_key .. ':' .. risk, id) end
end

-- What time alone makes of a request (as models.lapsed_status): a pending one
-- past its expiry is expired; one not yet expired, or an approved one, whose
-- caller's lease ran out is abandoned; an executing one whose lease ran out has an
-- unknown outcome. nil when none of these.
local function lapsed_status(f, now)
  local leased_out = f.lease ~= nil and now >= f.lease
  -- A hash without a readable expiry was not written by hold: it is over.
  if f.status == 'pending' and f.expires == nil then return 'expired' end
  if f.status == 'executing' then
    if leased_out then return 'outcome_unknown' end
    return nil
  end
  if f.status == 'approved' then
    if leased_out then return 'abandoned' end
    return nil
  end
  if f.status ~= 'pending' then return nil end
  if now >= f.expires then return 'expired' end
  if leased_out then return 'abandoned' end
  return nil
end

local LAPSE_EVENTS = { expired = 'request.expired', abandoned = 'request.abandoned',
  outcome_unknown = 'request.outcome_unknown' }

-- Why an action on a request that just lapsed to `status` is refused (as
-- _machine.lapse_why).
local function lapse_why(status, lease)
  if status == 'expired' then return 'it expired before a decision (expiry = deny)' end
  local at = 'no lease'
  if lease then
    local s = math.floor(lease / 1000) % 86400
    at = string.format('its lease ran out at %02d:%02d:%02d UTC', math.floor(s / 3600),
      math.floor(s / 60) % 60, s % 60)
  end
  if status == 'abandoned' then
    return 'its caller is gone (' .. at .. '): nothing is waiting to run it'
  end
  return 'its caller is gone (' .. at .. ') while the tool ran: ' ..
    'whether it ran is unknown; a person must look'
end

-- Apply what time alone did to the request (see lapsed_status); returns the
-- new status, or nil when nothing lapsed.
local function lapse(f, now, req_key, pending_key, owners_key, journal_key, wake_key, channel)
  local to = lapsed_status(f, now)
  if not to then return nil end
  redis.call('HSET', req_key, 'status', to)
  local data = {}
  if to ~= 'expired' then data = { was = f.status, lease_until = f.lease } end
  if f.status == 'pending' then
    redis.call('HSET', req_key, 'decided_at', now)
    settle(req_key, pending_key, owners_key, f.id, f.risk)
  end
  if to == 'abandoned' then mark(req_key, f.id, 'abandoned') end
  if to ~= 'outcome_unknown' then ended(req_key, f) end
  if to == 'outcome_unknown' then  -- a person must look: its call key stays until resolved
    local kmap = call_key(req_key, f)
    if kmap then redis.call('PERSIST', kmap) end
  end
  journal_push(journal_key, event_json(LAPSE_EVENTS[to], now, 'system', f, data))
  wake(wake_key, channel, f.id)
  f.status = to
  return to
end

-- The request after a step, so the caller needs no second round trip to read it.
local function state(req_key, votes_key)
  return {'ok', redis.call('HGETALL', req_key), redis.call('LRANGE', votes_key, 0, -1)}
end

local function opt(v)
  if v == nil or v == cjson.null then return nil end
  return v
end

-- Behaviour: sequences and limits (see gatekeeper/store/_behaviour.py, which
-- applies the same steps, in the same order, for MemoryStore). `plan` is the
-- policy's plan for one call (gatekeeper/policy/_behaviour.py, Plan.wire); its
-- keys are relative: an agent's under its hash tag, a deployment-wide limit's
-- (g = 1) under the deployment's tag, `plan.d`. Returns the hits (sequences
-- completed, limits passed) and whether the call is escalated.
local bhv = {}
bhv.RANK = { allow = 0, require_approval = 1, deny = 2, halt = 3 }
bhv.SLOT_TTL = 600000

function bhv.step(key, s, cid, tool, now, rid)
  local lv = {}
  local stored = redis.call('HGETALL', key)
  for i = 1, #stored, 2 do
    if stored[i] == 'last' and stored[i + 1] == cid then  -- the same call again (a retry)
      local res = redis.call('HGET', key, 'res')  -- the same answer
      if res and res ~= '' then return cjson.decode(res) end
      return nil
    end
  end
  for i = 1, #stored, 2 do
    local f = stored[i]
    if string.sub(f, 1, 1) == 'L' then
      local e = cjson.decode(stored[i + 1])
      if now - e[1] <= s.w then lv[tonumber(string.sub(f, 2))] = e
      else redis.call('HDEL', key, f) end
    end
  end
  local me = { cid, tool, now, rid or '' }
  local fired = nil
  for j = #s.m, 1, -1 do  -- highest position first: one call fills one step
    local p = s.m[j]
    if p == 1 then
      lv[1] = { now, { me } }
      redis.call('HSET', key, 'L1', cjson.encode(lv[1]))
    else
      local prev = lv[p - 1]
      if prev then
        if p == s.n then
          fired = prev[2]
        elseif (not lv[p]) or lv[p][1] <= prev[1] then
          local chain = {}
          for _, c in ipairs(prev[2]) do table.insert(chain, c) end
          table.insert(chain, me)
          lv[p] = { prev[1], chain }
          redis.call('HSET', key, 'L' .. p, cjson.encode(lv[p]))
        end
      end
    end
  end
  local res = ''
  if fired then res = cjson.encode(fired) end
  redis.call('HSET', key, 'last', cid, 'res', res)
  redis.call('PEXPIRE', key, s.w)
  return fired
end

function bhv.member(l, cid)
  if l.kind == 'budget' then return cid .. '|' .. string.format('%.17g', l.a) end
  return cid
end

function bhv.check(key, l, cid, now)
  if l.kind == 'concurrent' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  else
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - l.w)
  end
  if redis.call('ZSCORE', key, bhv.member(l, cid)) then return nil end  -- counted already
  local used, over
  if l.kind == 'budget' then
    used = 0
    for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
      used = used + tonumber(string.match(m, '|([^|]*)$'))
    end
    over = l.bad ~= '' or used + l.a > l.max
  else
    used = redis.call('ZCARD', key)
    over = used + 1 > l.max
  end
  if not over then return nil end
  return { kind = 'limit', i = l.i, v = l.v, u = used, max = l.max, a = l.a, bad = l.bad }
end

function bhv.lkey(tag, plan, l)
  if l.g == 1 then return plan.d .. ':bhv:' .. l.k end
  return tag .. ':bhv:' .. l.k
end

function bhv.apply(tag, plan, mode, now, verdict, rid)
  local hits = {}
  if mode == 'attempt' or mode == 'admit' then
    for _, s in ipairs(plan.s) do
      if #s.m > 0 then
        local fired = bhv.step(tag .. ':bhv:' .. s.k, s, plan.c, plan.t, now, rid)
        if fired then table.insert(hits, { kind = 'sequence', i = s.i, v = s.v, c = fired, sh = s.sh }) end
      end
    end
    for _, l in ipairs(plan.l) do
      local h = bhv.check(bhv.lkey(tag, plan, l), l, plan.c, now)
      if h then h.sh = l.sh; table.insert(hits, h) end
    end
    for _, n in ipairs(plan.n or {}) do
      if n.d == 'unparsable' or redis.call('HEXISTS', tag .. ':bhv:' .. n.k, n.d) == 0 then
        table.insert(hits, { kind = 'novelty', i = n.i, v = n.v, s = n.s, sh = n.sh })
      end
    end
  end
  for _, h in ipairs(hits) do  -- earned autonomy ends at a sequence or limit hit
    if h.sh ~= 1 and (h.kind == 'sequence' or h.kind == 'limit') then
      redis.call('HSET', tag .. ':bhv:demoted', '*', now)
      break
    end
  end
  if mode == 'attempt' then return hits, false end
  local shadows = {}  -- hits of shadow-mode entries: recorded, they change nothing
  for _, h in ipairs(hits) do
    if h.sh == 1 then table.insert(shadows, h) end
  end
  if mode == 'admit' then
    for _, h in ipairs(hits) do
      if h.sh ~= 1 and bhv.RANK[h.v] > bhv.RANK[verdict] then return hits, true end
    end
    if verdict ~= 'allow' then return shadows, false end
  end
  if mode == 'done' then
    for _, l in ipairs(plan.l) do
      if l.kind == 'concurrent' then redis.call('ZREM', bhv.lkey(tag, plan, l), plan.c) end
    end
    return {}, false
  end
  for _, s in ipairs(plan.s) do  -- admitted (allowed) or released: the call runs now
    for _, level in ipairs(s.x) do redis.call('HDEL', tag .. ':bhv:' .. s.k, 'L' .. level) end
  end
  for _, l in ipairs(plan.l) do
    local key = bhv.lkey(tag, plan, l)
    if l.kind == 'concurrent' then
      redis.call('ZADD', key, 'NX', now + bhv.SLOT_TTL, plan.c)
      redis.call('PEXPIRE', key, bhv.SLOT_TTL)
    else
      redis.call('ZADD', key, 'NX', now, bhv.member(l, plan.c))
      redis.call('PEXPIRE', key, l.w)
    end
  end
  for _, n in ipairs(plan.n or {}) do  -- it ran: from now on this agent has done it
    if n.d ~= 'unparsable' then
      redis.call('HSETNX', tag .. ':bhv:' .. n.k, n.d, cjson.encode({ s = n.s, at = now, c = plan.c }))
    end
  end
  return shadows, false
end

-- The hits as JSON for the client ('[]' when none: cjson would write '{}').
function bhv.encode(hits)
  if #hits == 0 then return '[]' end
  return cjson.encode(hits)
end
