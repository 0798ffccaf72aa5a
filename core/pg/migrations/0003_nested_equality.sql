-- The store's equality holds inside lists and objects too: [true] equals [1], {"a": 1}
-- equals {"a": 1.0}, as `core.store.matches` (Python ==) has it. ts_canonical now recurses, so
-- equal compound values share one text: one field lock, and the test a filter on such a value
-- uses (core/pg/tables.py, json_equals). Scalars keep the text they had.
CREATE OR REPLACE FUNCTION ts_canonical(v jsonb) RETURNS text
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
            (SELECT string_agg(ts_canonical(e), ',' ORDER BY i) FROM jsonb_array_elements(v) WITH ORDINALITY AS a(e, i)),
            '') || ']';
    WHEN 'object' THEN
        RETURN '{' || coalesce(
            (SELECT string_agg(to_jsonb(k)::text || ':' || ts_canonical(e), ',' ORDER BY k COLLATE "C") FROM jsonb_each(v) AS o(k, e)),
            '') || '}';
    ELSE
        RETURN v::text;
    END CASE;
END $$;
