-- The store's equality holds inside lists and objects too: [true] equals [1], {"a": 0} equals
-- {"a": false}, as `core.store.matches` (Python ==) has it, where jsonb's = tells them apart.
-- ts_deep_canonical is one text per class of equal values, at any depth; core/pg/tables.py
-- (json_equals) compares with it only when a filter's list or object holds a boolean, a 0 or
-- a 1, so other filters keep their plain, indexable test. ts_canonical, which the field locks
-- of every write use, is left as it is: it is on every write's path.
CREATE FUNCTION ts_deep_canonical(v jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
BEGIN
    CASE coalesce(jsonb_typeof(v), 'null')
    WHEN 'null' THEN
        RETURN 'null';
    WHEN 'boolean' THEN
        RETURN CASE WHEN v = 'true'::jsonb THEN '1' ELSE '0' END;
    WHEN 'number' THEN
        RETURN trim_scale(v::numeric)::text;
    WHEN 'array' THEN
        RETURN '[' || coalesce(
            (SELECT string_agg(ts_deep_canonical(e), ',' ORDER BY i) FROM jsonb_array_elements(v) WITH ORDINALITY AS a(e, i)),
            '') || ']';
    WHEN 'object' THEN
        RETURN '{' || coalesce(
            (SELECT string_agg(to_jsonb(k)::text || ':' || ts_deep_canonical(e), ',' ORDER BY k COLLATE "C") FROM jsonb_each(v) AS o(k, e)),
            '') || '}';
    ELSE
        RETURN v::text;
    END CASE;
END $$;
