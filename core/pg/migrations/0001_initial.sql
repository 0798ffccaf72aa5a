-- Turnstile on PostgreSQL, schema version 1.
-- Users and sessions get real tables; every other collection lives in `documents`.
-- Their first column is the key. `keyed` says the document's own field of that name equals
-- the key (always, for what Turnstile writes); when it does not, the field is kept in `extra`.
-- A typed column holds a field only when the value has the column's type; any other
-- value (null included) and any other field is kept in `extra`, so every document
-- reads back exactly as it was written.

CREATE TABLE users (
    username text PRIMARY KEY,           -- the key of collection auth.users
    password text NOT NULL,              -- bcrypt hash
    roles    jsonb,
    created  bigint,
    keyed    boolean NOT NULL DEFAULT true,
    extra    jsonb NOT NULL DEFAULT '{}',
    seq      bigserial NOT NULL          -- first-write order, as the JSON store lists documents
);

-- No foreign key to users: the store interface lets a session record exist on its own
-- (Accounts deletes a user's sessions in the same transaction as the user), and a
-- cascade would make a delete on PostgreSQL do more than the same delete on the JSON store.
CREATE TABLE sessions (
    digest    text PRIMARY KEY,          -- SHA-256 of the refresh token, the key of auth.sessions
    username  text,
    family    text,
    created   bigint,
    expires   bigint,
    retired   bigint,
    successor text,
    keyed     boolean NOT NULL DEFAULT true,
    extra     jsonb NOT NULL DEFAULT '{}',
    seq       bigserial NOT NULL
);
-- Documents filed under a key they do not carry (never written by Turnstile itself) stay findable.
CREATE INDEX users_unkeyed ON users ((extra -> 'username')) WHERE NOT keyed;
CREATE INDEX sessions_unkeyed ON sessions ((extra -> 'digest')) WHERE NOT keyed;
CREATE INDEX sessions_family ON sessions (family);
CREATE INDEX sessions_username ON sessions (username);
CREATE INDEX sessions_expires ON sessions (expires);

CREATE TABLE documents (
    collection text NOT NULL,
    key        text NOT NULL,
    doc        jsonb NOT NULL,
    seq        bigserial NOT NULL,
    PRIMARY KEY (collection, key)
);

-- The next automatic id of a collection; only ever moves forward.
CREATE TABLE id_counters (
    collection text PRIMARY KEY,
    next_id    bigint NOT NULL
);

-- Fields with an index: equality reads on them lock (collection, field, value) instead of
-- the whole collection, and every write locks the values of these fields it touches.
CREATE TABLE indexed_fields (
    collection text NOT NULL,
    field      text NOT NULL,
    PRIMARY KEY (collection, field)
);
INSERT INTO indexed_fields VALUES
    ('auth.users', 'username'),
    ('auth.sessions', 'username'),
    ('auth.sessions', 'family');

-- One row, rewritten by the health check: a real durable write.
CREATE TABLE health_probe (
    id integer PRIMARY KEY CHECK (id = 1),
    at timestamptz NOT NULL
);

-- Advisory lock keys. Collection names never contain ':' '#' or '*', so the three
-- kinds cannot collide by construction (only by a 64-bit hash collision, which costs a wait).
CREATE FUNCTION ts_key_lock(coll text, k text) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT hashtextextended(coll || ':' || k, 0) $$;

CREATE FUNCTION ts_collection_lock(coll text) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT hashtextextended('*' || coll, 0) $$;

-- One text per class of values equal under the store's equality (a missing field equals
-- null, true equals 1, 1 equals 1.0), so equal values share a lock.
CREATE FUNCTION ts_canonical(v jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT CASE
        WHEN v IS NULL OR jsonb_typeof(v) = 'null' THEN 'null'
        WHEN jsonb_typeof(v) = 'boolean' THEN CASE WHEN v = 'true'::jsonb THEN '1' ELSE '0' END
        WHEN jsonb_typeof(v) = 'number' THEN trim_scale(v::numeric)::text
        ELSE v::text
    END $$;

CREATE FUNCTION ts_field_lock(coll text, field text, v jsonb) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT hashtextextended(coll || '#' || field || '=' || ts_canonical(v), 0) $$;

-- Lock (collection, key) for the rest of the transaction, then read it with a fresh
-- snapshot (READ COMMITTED: each statement of a VOLATILE function takes a new one).
CREATE FUNCTION ts_get_user(k text) RETURNS SETOF users
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(ts_key_lock('auth.users', k));
    RETURN QUERY SELECT * FROM users WHERE username = k;
END $$;

CREATE FUNCTION ts_get_session(k text) RETURNS SETOF sessions
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(ts_key_lock('auth.sessions', k));
    RETURN QUERY SELECT * FROM sessions WHERE digest = k;
END $$;

CREATE FUNCTION ts_get_document(coll text, k text) RETURNS SETOF documents
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(ts_key_lock(coll, k));
    RETURN QUERY SELECT * FROM documents WHERE collection = coll AND key = k;
END $$;

-- Lock many keys of one collection (in a fixed order, so two such calls cannot deadlock).
CREATE FUNCTION ts_lock_keys(coll text, ks text[]) RETURNS void
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(l) FROM (
        SELECT DISTINCT ts_key_lock(coll, k) AS l FROM unnest(ks) AS k ORDER BY 1
    ) AS locks;
END $$;

-- Before a write: the collection lock shared (a whole-collection read holds it exclusive),
-- and, shared, the (collection, field, value) lock of every indexed field of the old and
-- new versions (an equality read on an indexed field holds that one exclusive).
-- The indexed fields are read here, from the table every instance shares.
CREATE FUNCTION ts_write_locks(coll text, olds jsonb[], news jsonb[]) RETURNS void
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(ts_collection_lock(coll));
    PERFORM pg_advisory_xact_lock_shared(l) FROM (
        SELECT DISTINCT ts_field_lock(coll, f.field, d -> f.field) AS l
        FROM indexed_fields AS f,
             unnest(olds || news) AS d
        WHERE f.collection = coll AND d IS NOT NULL
        ORDER BY 1
    ) AS locks;
END $$;

-- Before a read by equality: the lock of the first indexed field among `equals`, or the
-- whole collection when none is indexed. Returns the field it locked (null: the collection).
CREATE FUNCTION ts_find_lock(coll text, equals jsonb) RETURNS text
    LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    chosen text;
BEGIN
    SELECT f.field INTO chosen FROM indexed_fields AS f
    WHERE f.collection = coll AND equals ? f.field
    ORDER BY f.field LIMIT 1;
    IF chosen IS NULL THEN
        PERFORM pg_advisory_xact_lock(ts_collection_lock(coll));
    ELSE
        PERFORM pg_advisory_xact_lock(ts_field_lock(coll, chosen, equals -> chosen));
    END IF;
    RETURN chosen;
END $$;

-- A row of users or sessions as the document it stores (enough for its lock values).
CREATE FUNCTION ts_row_doc(r jsonb, key_column text) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_strip_nulls(
               CASE WHEN (r ->> 'keyed')::boolean THEN r ELSE r - key_column END - 'extra' - 'keyed' - 'seq'
           ) || (r -> 'extra') $$;

-- Before a write of one key in a single statement: lock the key, read what it holds now
-- (a fresh snapshot, after the wait) and take the write locks for it and for `news`.
CREATE FUNCTION ts_prepare_write(coll text, k text, news jsonb[]) RETURNS void
    LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    old jsonb;
BEGIN
    PERFORM pg_advisory_xact_lock(ts_key_lock(coll, k));
    IF coll = 'auth.users' THEN
        SELECT ts_row_doc(to_jsonb(u), 'username') INTO old FROM users AS u WHERE u.username = k;
    ELSIF coll = 'auth.sessions' THEN
        SELECT ts_row_doc(to_jsonb(s), 'digest') INTO old FROM sessions AS s WHERE s.digest = k;
    ELSE
        SELECT d.doc INTO old FROM documents AS d WHERE d.collection = coll AND d.key = k;
    END IF;
    PERFORM ts_write_locks(coll, ARRAY[old], news);
END $$;
