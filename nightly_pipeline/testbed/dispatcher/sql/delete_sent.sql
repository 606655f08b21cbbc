-- Rows whose message is in the stream.
DELETE FROM outbox WHERE id = ANY($1::bigint[])
