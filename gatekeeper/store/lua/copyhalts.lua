-- KEYS: halts   ARGV: field, record pairs
-- Copies deployment-wide halts into one agent's halts (never removes any).
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
