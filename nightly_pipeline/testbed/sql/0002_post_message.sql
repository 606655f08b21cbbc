-- POST /v1/messages in one statement, so one round trip (CONTRACT.md): the API calls it
-- outside any explicit transaction, and the statement's own transaction holds the
-- conversation row lock from the seq increment to the commit.
--
-- SECURITY INVOKER (the default, stated): it runs as the caller, testbed_app, so every
-- statement below is checked by the FORCEd row-level security policies of 0001, with the
-- caller set here transaction-locally the way the API's db.tx() sets it.
--
-- Errors (the API maps both of the first kind to 403):
--   insufficient_privilege  not a participant: the UPDATE saw no row (policy USING), or
--                           the message INSERT failed the policy's WITH CHECK
--   unique_violation        a concurrent post of the same client_msg_id committed between
--                           our first look and our INSERT; the statement rolled back with
--                           nothing consumed, and calling again answers the duplicate
CREATE FUNCTION testbed_post_message(
    p_user_id BIGINT,
    p_conversation_id UUID,
    p_client_msg_id TEXT,
    p_ciphertext BYTEA,
    p_sha256 TEXT,
    OUT message_id UUID,
    OUT seq BIGINT,
    OUT duplicate BOOLEAN
)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER
    AS $$
#variable_conflict use_column
BEGIN
    PERFORM set_config('app.user_id', p_user_id::TEXT, true);

    -- A retry: the first message's id and seq, without locking or consuming a seq.
    SELECT m.id, m.seq INTO message_id, seq
        FROM messages m
        WHERE m.conversation_id = p_conversation_id AND m.client_msg_id = p_client_msg_id;
    IF FOUND THEN
        duplicate := true;
        RETURN;
    END IF;

    -- The row lock orders writers: seq without gaps or repeats.
    UPDATE conversations c SET last_seq = c.last_seq + 1, updated_at = now()
        WHERE c.id = p_conversation_id
        RETURNING c.last_seq INTO seq;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'not a participant (post message)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;

    message_id := gen_random_uuid();
    INSERT INTO messages (id, conversation_id, sender_id, client_msg_id, seq, ciphertext, sha256)
        VALUES (message_id, p_conversation_id, p_user_id, p_client_msg_id, seq,
                p_ciphertext, p_sha256);
    INSERT INTO outbox (message_id) VALUES (message_id);
    duplicate := false;
END
$$;

REVOKE ALL ON FUNCTION testbed_post_message(BIGINT, UUID, TEXT, BYTEA, TEXT) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION testbed_post_message(BIGINT, UUID, TEXT, BYTEA, TEXT) TO testbed_app;
