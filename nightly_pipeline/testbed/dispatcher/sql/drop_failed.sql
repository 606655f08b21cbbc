-- The fault knob dlq_on_redis_error = false: rows whose XADD failed are deleted (lost).
DELETE FROM outbox WHERE id = ANY($1::bigint[])
