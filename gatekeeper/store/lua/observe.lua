-- KEYS: halts   ARGV: plan, mode (attempt | release | done), now, request id ('' = none)
-- A held call's attempt (before its hold), an allowed call's end (frees its
-- concurrency slots), or a release done apart from the claim.
local plan = cjson.decode(ARGV[1])
local hits = bhv.apply(string.match(KEYS[1], '^(%b{})'), plan, ARGV[2], clock(ARGV[3]), 'allow', ARGV[4])
return bhv.encode(hits)
