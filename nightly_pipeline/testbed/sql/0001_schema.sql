-- Testbed schema (CONTRACT.md). Applied once by migrate.py as the superuser.

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL
);

CREATE TABLE conversations (
    id         UUID PRIMARY KEY,
    owner_id   BIGINT NOT NULL REFERENCES users (id),
    title      TEXT NOT NULL DEFAULT '',
    version    INT NOT NULL DEFAULT 1,
    last_seq   BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE participants (
    conversation_id UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         BIGINT NOT NULL REFERENCES users (id),
    added_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX participants_user_idx ON participants (user_id, conversation_id);

CREATE TABLE messages (
    id              UUID PRIMARY KEY,
    conversation_id UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    sender_id       BIGINT NOT NULL REFERENCES users (id),
    client_msg_id   TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    ciphertext      BYTEA NOT NULL,
    sha256          TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (conversation_id, client_msg_id),
    UNIQUE (conversation_id, seq)
);

CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    message_id      UUID NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    attempts        INT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    dead            BOOLEAN NOT NULL DEFAULT false,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at, id) WHERE NOT dead;
CREATE INDEX outbox_message_idx ON outbox (message_id);

CREATE TABLE storage_probe (
    id         BIGSERIAL PRIMARY KEY,
    payload    TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The caller, from the transaction-local setting the API sets per request (NULL if unset).
CREATE FUNCTION testbed_current_user_id() RETURNS BIGINT
    LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('app.user_id', true), '')::BIGINT $$;

-- SECURITY DEFINER (owned by the superuser, so it reads past RLS): used by the policies,
-- which could not query participants under its own policy without recursing.
CREATE FUNCTION testbed_is_participant(conv UUID) RETURNS BOOLEAN
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$
        SELECT EXISTS (
            SELECT 1 FROM participants
            WHERE conversation_id = conv AND user_id = testbed_current_user_id()
        )
    $$;

CREATE FUNCTION testbed_is_owner(conv UUID) RETURNS BOOLEAN
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$
        SELECT EXISTS (
            SELECT 1 FROM conversations WHERE id = conv AND owner_id = testbed_current_user_id()
        )
    $$;

-- Whether a conversation exists at all (404 vs 403); reveals nothing else.
CREATE FUNCTION testbed_conversation_exists(conv UUID) RETURNS BOOLEAN
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$ SELECT EXISTS (SELECT 1 FROM conversations WHERE id = conv) $$;

ALTER TABLE conversations ENABLE ROW LEVEL SECURITY;
ALTER TABLE conversations FORCE ROW LEVEL SECURITY;
ALTER TABLE participants ENABLE ROW LEVEL SECURITY;
ALTER TABLE participants FORCE ROW LEVEL SECURITY;
ALTER TABLE messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE messages FORCE ROW LEVEL SECURITY;

CREATE POLICY conversations_select ON conversations FOR SELECT
    USING (testbed_is_participant(id));
CREATE POLICY conversations_insert ON conversations FOR INSERT
    WITH CHECK (owner_id = testbed_current_user_id());
CREATE POLICY conversations_update ON conversations FOR UPDATE
    USING (testbed_is_participant(id));
CREATE POLICY conversations_delete ON conversations FOR DELETE
    USING (testbed_is_participant(id));

CREATE POLICY participants_select ON participants FOR SELECT
    USING (testbed_is_participant(conversation_id));
-- A participant adds others; the owner adds the first participants of a new conversation.
CREATE POLICY participants_insert ON participants FOR INSERT
    WITH CHECK (testbed_is_participant(conversation_id) OR testbed_is_owner(conversation_id));
CREATE POLICY participants_delete ON participants FOR DELETE
    USING (testbed_is_participant(conversation_id));

CREATE POLICY messages_select ON messages FOR SELECT
    USING (testbed_is_participant(conversation_id));
CREATE POLICY messages_insert ON messages FOR INSERT
    WITH CHECK (sender_id = testbed_current_user_id() AND testbed_is_participant(conversation_id));

-- Roles. testbed_app: the API (RLS applies). testbed_worker: dispatcher and consumer,
-- which read every conversation's messages and participants (BYPASSRLS).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'testbed_app') THEN
        CREATE ROLE testbed_app LOGIN NOSUPERUSER NOBYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'testbed_worker') THEN
        CREATE ROLE testbed_worker LOGIN NOSUPERUSER BYPASSRLS;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO testbed_app, testbed_worker',
                   current_database());
END
$$;

GRANT USAGE ON SCHEMA public TO testbed_app, testbed_worker;
GRANT SELECT ON users TO testbed_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON conversations, participants TO testbed_app;
GRANT SELECT, INSERT ON messages TO testbed_app;
GRANT SELECT, INSERT ON outbox TO testbed_app;
GRANT SELECT, INSERT ON storage_probe TO testbed_app;
GRANT USAGE ON SEQUENCE outbox_id_seq, storage_probe_id_seq TO testbed_app;
GRANT EXECUTE ON FUNCTION testbed_current_user_id(), testbed_is_participant(UUID),
    testbed_is_owner(UUID), testbed_conversation_exists(UUID) TO testbed_app, testbed_worker;

GRANT SELECT ON users, conversations, participants, messages TO testbed_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox TO testbed_worker;
GRANT USAGE ON SEQUENCE outbox_id_seq TO testbed_worker;
