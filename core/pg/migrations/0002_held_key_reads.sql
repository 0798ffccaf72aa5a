-- Keyed reads of a transaction that has not sent BEGIN yet (PgStore sends it only when a
-- transaction needs one): the key's lock is taken for the session, then the key is read with a
-- fresh snapshot. The store releases such locks (pg_advisory_unlock_all) right after the
-- transaction's single write statement committed, or after its COMMIT or ROLLBACK, and closes
-- the connection if it cannot; a session-level and a transaction-level lock on one key conflict
-- between sessions as two transaction-level locks do.

CREATE FUNCTION ts_hold_user(k text) RETURNS SETOF users
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_lock(ts_key_lock('auth.users', k));
    RETURN QUERY SELECT * FROM users WHERE username = k;
END $$;

CREATE FUNCTION ts_hold_session(k text) RETURNS SETOF sessions
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_lock(ts_key_lock('auth.sessions', k));
    RETURN QUERY SELECT * FROM sessions WHERE digest = k;
END $$;

CREATE FUNCTION ts_hold_document(coll text, k text) RETURNS SETOF documents
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_lock(ts_key_lock(coll, k));
    RETURN QUERY SELECT * FROM documents WHERE collection = coll AND key = k;
END $$;

-- In the one write statement that commits such a transaction: every key the session holds is
-- locked again for that statement's transaction (the session has the lock, so this never waits),
-- then the session's locks are released. The keys stay locked until the statement commits, and
-- the store needs no round trip to release them afterwards.
CREATE FUNCTION ts_trade_locks(colls text[], ks text[]) RETURNS void
    LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF cardinality(ks) = 0 THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(ts_key_lock(x.c, x.k)) FROM unnest(colls, ks) AS x(c, k);
    PERFORM pg_advisory_unlock_all();
END $$;
