-- Rows whose message is in the stream: kept until the consumer has delivered the message
-- (it deletes the row), due again after max($2 s, the row's age) in case the entry is lost
-- in a way the dispatcher cannot see; $1 ids, $2 redeliver_after_s.
UPDATE outbox
SET next_attempt_at = now() + make_interval(
        secs => greatest($2::float8, extract(epoch FROM now() - created_at)::float8)
    ),
    last_error = NULL
WHERE id = ANY($1::bigint[])
