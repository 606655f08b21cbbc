-- A failed attempt: back off exponentially (capped, jittered); $3 = the failure counts
-- towards the dead letter (Redis refused the entry), false while Redis is unreachable.
-- $1 ids, $2 error text, $3 counts, $4 max attempts, $5 backoff base s, $6 backoff cap s.
UPDATE outbox
SET attempts = attempts + 1,
    dead = $3 AND attempts + 1 >= $4,
    next_attempt_at = now() + make_interval(
        secs => least($6::float8, $5::float8 * power(2, least(attempts, 30)) * (0.75 + random() / 2))
    ),
    last_error = left($2, 500)
WHERE id = ANY($1::bigint[])
RETURNING id, dead
