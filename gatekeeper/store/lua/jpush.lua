-- KEYS: journal   ARGV: entries
-- Appends drafts written from Python, numbered like every script's (see journal_push).
for i = 1, #ARGV do journal_push(KEYS[1], ARGV[i]) end
return #ARGV
