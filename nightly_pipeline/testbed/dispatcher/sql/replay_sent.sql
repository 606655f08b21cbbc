-- Redis lost its data (the epoch key is gone): every row kept after its XADD may be a lost
-- stream entry, so all of them are due now ($1: rows just written to the new Redis).
UPDATE outbox
SET next_attempt_at = now()
WHERE NOT dead AND next_attempt_at > now() AND id <> ALL($1::bigint[])
