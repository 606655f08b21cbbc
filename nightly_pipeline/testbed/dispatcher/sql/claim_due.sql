-- Due outbox rows with their message, oldest first; rows another dispatcher holds are skipped.
SELECT o.id AS outbox_id,
       o.attempts,
       m.id AS message_id,
       m.conversation_id,
       m.sender_id,
       m.seq,
       m.sha256,
       m.ciphertext,
       extract(epoch FROM m.created_at)::float8 AS created_at
FROM outbox o
JOIN messages m ON m.id = o.message_id
WHERE NOT o.dead AND o.next_attempt_at <= now()
ORDER BY o.id
LIMIT $1
FOR UPDATE OF o SKIP LOCKED
