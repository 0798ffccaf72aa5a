"""Where each collection's documents live, and its filters as SQL.

``auth.users`` and ``auth.sessions`` have tables of their own; every other
collection shares ``documents``. A typed column holds a field only when the
value has the column's type (text, a 64-bit integer, or any JSON for
``roles``); anything else (a ``null`` included) stays in ``extra``, so
`Layout.to_doc` gives back exactly the document that was written.

Filters compile to SQL with the meaning of `core.store.matches`: a missing
field equals ``None``; ``True == 1`` and ``1 == 1.0`` as in Python; a
comparison holds only between numbers or between strings (compared by code
point, ``COLLATE "C"``).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Callable, Sequence

import asyncpg

from ..store import Cond, Doc, check_field, check_name
from ..jsoncodec import dumps_str

INT64 = 2**63
TEXT, INT, JSON = "text", "int", "json"
_CAST = {TEXT: "text", INT: "bigint", JSON: "jsonb"}
_MISSING = object()


class Params:
    """Positional parameters of one statement; `add` returns the placeholder."""

    def __init__(self, first: int = 1) -> None:
        self.first = first
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${self.first + len(self.values) - 1}"


def _int_value(value: Any) -> int | None:
    """``value`` as the 64-bit integer it equals, if there is one (``True`` is 1, ``2.0`` is 2)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if -INT64 <= value < INT64 else None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and -INT64 <= value < INT64:
        return int(value)
    return None


def jsonable(value: Any) -> bool:
    """Whether ``value`` can equal a JSON value (what a filter or a lock can name)."""
    if isinstance(value, tuple):  # a tuple equals no JSON value, though it would encode as a list
        return False
    try:
        dumps_str(value)
    except TypeError:
        return False
    return True


def json_equals(expr: str, value: Any, params: Params) -> str:
    """SQL for ``<jsonb expr> == value``, a missing value (SQL NULL) equal to ``None``."""
    if value is None:
        return f"({expr} IS NULL OR {expr} = 'null'::jsonb)"
    if isinstance(value, float) and not math.isfinite(value):
        return "FALSE"
    if not jsonable(value):
        return "FALSE"
    if isinstance(value, bool):
        return f"{expr} IN ({params.add(value)}::jsonb, {params.add(int(value))}::jsonb)"
    if isinstance(value, (int, float)) and value in (0, 1):
        return f"{expr} IN ({params.add(value)}::jsonb, {params.add(bool(value))}::jsonb)"
    if isinstance(value, (list, dict)) and _holds_bool_or_bit(value):
        # jsonb's = tells true from 1 inside lists and objects; Python's == does not (0003_nested_equality.sql).
        param = params.add(value)
        return f"(jsonb_typeof({expr}) = jsonb_typeof({param}::jsonb) AND ts_deep_canonical({expr}) = ts_deep_canonical({param}::jsonb))"
    return f"{expr} = {params.add(value)}::jsonb"


def _holds_bool_or_bit(value: Any) -> bool:
    """Whether a list or object holds, at any depth, a value that equals a value of another JSON type (true, 1, 0.0...)."""
    if isinstance(value, list):
        return any(_holds_bool_or_bit(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_bool_or_bit(v) for v in value.values())
    return isinstance(value, (bool, int, float)) and value in (0, 1)


def _number(value: int | float, params: Params) -> str:
    text = str(value) if isinstance(value, int) else ("Infinity" if value > 0 else "-Infinity") if math.isinf(value) else repr(value)
    return f"{params.add(text)}::numeric"


def json_compares(expr: str, op: str, value: int | float | str, params: Params) -> str:
    """SQL for a `Cond` on a jsonb value: true only for a value of the same kind."""
    if isinstance(value, str):
        return (
            f"(CASE WHEN jsonb_typeof({expr}) = 'string' "
            f"THEN ({expr} #>> '{{}}') COLLATE \"C\" {op} {params.add(value)}::text ELSE FALSE END)"
        )
    if isinstance(value, float) and math.isnan(value):  # nothing is ordered against NaN; everything differs
        return f"(jsonb_typeof({expr}) = 'number')" if op == "!=" else "FALSE"
    return f"(CASE WHEN jsonb_typeof({expr}) = 'number' THEN ({expr})::numeric {op} {_number(value, params)} ELSE FALSE END)"


class Layout:
    """How one collection is stored: its table, its key, its documents and its filters."""

    collection: str
    table: str
    key_column: str
    scope: str  # the condition that selects this collection's rows
    get_function: str  # SQL: lock the key ($1) until the transaction ends, then read it with a fresh snapshot
    hold_function: str  # the same with the lock held for the session (before BEGIN; the store releases it)

    def to_doc(self, row: asyncpg.Record) -> Doc:
        raise NotImplementedError

    def row_values(self, key: str, doc: Doc) -> list[Any]:
        raise NotImplementedError

    def equals(self, field: str, value: Any, params: Params) -> str:
        raise NotImplementedError

    def compares(self, cond: Cond, params: Params) -> str:
        raise NotImplementedError

    def index_ddl(self, field: str) -> str | None:
        raise NotImplementedError

    # -- shared SQL -----------------------------------------------------------------------

    @property
    def locks_cte(self) -> str:
        return f"WITH l AS (SELECT ts_write_locks('{self.collection}', $1::jsonb[], $2::jsonb[]))"

    def insert_select(self, first: int) -> str:
        """``INSERT INTO table (...) SELECT $first, ... FROM l``: `row_values` from parameter ``first`` on."""
        raise NotImplementedError

    def conflict(self, update: bool) -> str:
        raise NotImplementedError

    def put_one_sql(self) -> str:
        """Create or replace one key in one statement (it locks and reads the old version itself):
        $1 the new version (for the locks), $2... `row_values`."""
        lock = f"WITH l AS (SELECT ts_prepare_write('{self.collection}', $2::text, $1::jsonb[]))"
        return f"{lock} {self.insert_select(2)} {self.conflict(True)}"

    def insert_one_sql(self) -> str:
        """Insert one document unless its key is taken (then no row comes back), in one statement:
        $1 the new version (for the locks), $2... `row_values`."""
        lock = (
            f"WITH l AS (SELECT pg_advisory_xact_lock(ts_key_lock('{self.collection}', $2::text)) AS a, "
            f"ts_write_locks('{self.collection}', '{{}}'::jsonb[], $1::jsonb[]) AS b)"
        )
        return f"{lock} {self.insert_select(2)} {self.conflict(False)} RETURNING true"

    def row_casts(self) -> list[str]:
        """The SQL types of `row_values`, in order."""
        raise NotImplementedError

    def insert_rows(self, arrays: str) -> str:
        """``INSERT INTO table (...) SELECT ... FROM unnest(arrays) AS v, g``: one row per element."""
        raise NotImplementedError

    def flush_sql(self, deletes: bool = True) -> str:
        """A transaction's pending writes to this collection in one statement.

        $1 keys written without having been read (each is locked here, its current version read
        for its write locks), $2 their new versions; $3 the old versions (read under their key
        locks) and $4 the new versions of the other keys, for the write locks; $5 keys to delete;
        $6... one array per `row_values` column, for the rows to create or replace; then the
        collections and keys whose session-level locks this statement takes over (`ts_trade_locks`;
        empty arrays for none). JSON values travel as text (`json_array`): asyncpg would read a list
        value as a dimension of the array. The locks (CTE ``g``) come first: the main query reads
        them, and the delete and the insert, joined with ``g``, run after it.

        Without ``deletes`` the statement has no delete: a plan made for it while the table was
        small (PostgreSQL keeps a prepared statement's generic plan) scanned the whole table for
        the empty list of keys to delete, on every write, until the next ANALYZE.
        """
        c = self.collection
        casts = self.row_casts()
        arrays = ", ".join(f"${i}::{_array(cast)}" for i, cast in enumerate(casts, start=6))
        held = 6 + len(casts)
        return (
            f"WITH h AS (SELECT ts_trade_locks(${held}::text[], ${held + 1}::text[])), "
            f"b AS (SELECT ts_prepare_write('{c}', x.k, ARRAY[x.n]) FROM unnest($1::text[], $2::text[]::jsonb[]) AS x(k, n)), "
            f"l AS (SELECT ts_write_locks('{c}', $3::text[]::jsonb[], $4::text[]::jsonb[])), "
            f"g AS (SELECT (SELECT count(*) FROM h) AS nh, (SELECT count(*) FROM b) AS nb, (SELECT count(*) FROM l) AS nl, "
            f"cardinality($5::text[]) AS nd), "  # $5 typed in both forms
            + (f"d AS (DELETE FROM {self.table} AS t USING g WHERE t.{self.key_column} = ANY($5::text[]) AND {self.scope}), "
               if deletes else "")
            + f"i AS ({self.insert_rows(arrays)} {self.conflict(True)}) "
            f"SELECT nb FROM g"
        )

    def delete_one_sql(self) -> str:
        """Delete one key ($1) in one statement; a row back if there was one."""
        return (
            f"WITH l AS (SELECT ts_prepare_write('{self.collection}', $1::text, '{{}}'::jsonb[])) "
            f"DELETE FROM {self.table} AS t USING l WHERE t.{self.key_column} = $1 AND {self.scope} RETURNING true"
        )

    def delete_sql(self) -> str:
        """Delete the keys in $3 after the write locks for the old versions in $1."""
        return f"{self.locks_cte} DELETE FROM {self.table} AS t USING l WHERE t.{self.key_column} = ANY($3::text[]) AND {self.scope}"

    def select_sql(self, where: str = "TRUE", what: str = "*", order: bool = True) -> str:
        tail = " ORDER BY seq" if order else ""
        return f"SELECT {what} FROM {self.table} WHERE {self.scope} AND ({where}){tail}"

    def filter_sql(self, conds: Sequence[Cond], equals: dict[str, Any], params: Params) -> str:
        parts = [self.equals(check_field(f), v, params) for f, v in equals.items()]
        parts += [self.compares(c, params) for c in conds]
        return " AND ".join(parts) or "TRUE"

    def key_of(self, row: asyncpg.Record) -> str:
        return row[self.key_column]


class DocumentLayout(Layout):
    """A collection in the shared ``documents`` table."""

    table = "documents"
    key_column = "key"

    def __init__(self, collection: str) -> None:
        self.collection = check_name(collection)  # dotted lowercase words: safe inside quotes
        self.scope = f"collection = '{self.collection}'"
        self.get_function = f"SELECT * FROM ts_get_document('{self.collection}', $1)"
        self.hold_function = f"SELECT * FROM ts_hold_document('{self.collection}', $1)"

    def to_doc(self, row: asyncpg.Record) -> Doc:
        return row["doc"]

    def row_values(self, key: str, doc: Doc) -> list[Any]:
        return [key, doc]

    def insert_select(self, first: int) -> str:
        return f"INSERT INTO documents (collection, key, doc) SELECT '{self.collection}', ${first}::text, ${first + 1}::jsonb FROM l"

    def row_casts(self) -> list[str]:
        return ["text", "jsonb"]

    def insert_rows(self, arrays: str) -> str:
        return f"INSERT INTO documents (collection, key, doc) SELECT '{self.collection}', v.k, v.d FROM unnest({arrays}) AS v(k, d), g"

    def conflict(self, update: bool) -> str:
        return "ON CONFLICT (collection, key) " + ("DO UPDATE SET doc = EXCLUDED.doc" if update else "DO NOTHING")

    def equals(self, field: str, value: Any, params: Params) -> str:
        return json_equals(f"(doc -> '{field}')", value, params)

    def compares(self, cond: Cond, params: Params) -> str:
        return json_compares(f"(doc -> '{cond.field}')", cond.op, cond.value, params)

    def index_ddl(self, field: str) -> str:
        name = index_name("documents", self.collection, field)
        return f"CREATE INDEX IF NOT EXISTS {name} ON documents ((doc -> '{field}')) WHERE {self.scope}"


class TypedLayout(Layout):
    """A collection with a table of its own: typed columns plus ``extra`` for the rest."""

    def __init__(
        self,
        collection: str,
        table: str,
        columns: Sequence[tuple[str, str]],
        get_function: str,
        check: Callable[[str, Doc], None],
    ) -> None:
        self.collection = collection
        self.table = table
        self.columns = list(columns)
        self.kinds = dict(columns)
        self.key_column = columns[0][0]
        self.scope = "TRUE"
        self.get_function = f"SELECT * FROM {get_function}($1)"
        self.hold_function = f"SELECT * FROM {get_function.replace('ts_get_', 'ts_hold_')}($1)"
        self.check = check

    def to_doc(self, row: asyncpg.Record) -> Doc:
        extra: Doc = row["extra"]
        doc: Doc = {}
        for name, _ in self.columns:
            value = row[name] if name != self.key_column or row["keyed"] else None
            if value is not None:
                doc[name] = value
            elif name in extra:
                doc[name] = extra[name]
        for name, value in extra.items():
            if name not in self.kinds:
                doc[name] = value
        return doc

    def row_values(self, key: str, doc: Doc) -> list[Any]:
        self.check(key, doc)
        values: list[Any] = [key]
        extra: Doc = {}
        keyed = doc.get(self.key_column, _MISSING) == key
        if not keyed and self.key_column in doc:
            extra[self.key_column] = doc[self.key_column]
        for name, kind in self.columns[1:]:
            value = doc.get(name, _MISSING)
            if _fits(kind, value):
                values.append(value)
            else:
                values.append(None)
                if value is not _MISSING:
                    extra[name] = value
        for name, value in doc.items():
            if name not in self.kinds:
                extra[name] = value
        return [*values, keyed, extra]

    def _names(self) -> list[str]:
        return [n for n, _ in self.columns] + ["keyed", "extra"]

    def insert_select(self, first: int) -> str:
        casts = [_CAST[k] for _, k in self.columns] + ["boolean", "jsonb"]
        values = ", ".join(f"${i}::{cast}" for i, cast in enumerate(casts, start=first))
        return f"INSERT INTO {self.table} ({', '.join(self._names())}) SELECT {values} FROM l"

    def row_casts(self) -> list[str]:
        return [_CAST[k] for _, k in self.columns] + ["boolean", "jsonb"]

    def insert_rows(self, arrays: str) -> str:
        return f"INSERT INTO {self.table} ({', '.join(self._names())}) SELECT v.* FROM unnest({arrays}) AS v, g"

    def conflict(self, update: bool) -> str:
        if not update:
            return f"ON CONFLICT ({self.key_column}) DO NOTHING"
        updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in self._names()[1:])
        return f"ON CONFLICT ({self.key_column}) DO UPDATE SET {updates}"

    def _extra(self, field: str) -> str:
        return f"(extra -> '{field}')"

    def _column(self, field: str) -> str:
        """The column as the document's field: the key column only where the document carries its key."""
        return f"(CASE WHEN keyed THEN {field} END)" if field == self.key_column else field

    def equals(self, field: str, value: Any, params: Params) -> str:
        kind = self.kinds.get(field)
        extra = self._extra(field)
        if kind is None:
            return json_equals(extra, value, params)
        if kind == TEXT and isinstance(value, str):  # the common case, straight on the column's index
            if field != self.key_column:
                return f"({field} = {params.add(value)}::text)"
            # A document whose key field differs from its key keeps that field in extra.
            return f"((keyed AND {field} = {params.add(value)}::text) OR (NOT keyed AND {json_equals(extra, value, params)}))"
        field = self._column(field)
        if kind == JSON:
            return json_equals(f"coalesce({field}, {extra})", value, params)
        if kind == TEXT:
            return f"({field} IS NULL AND {json_equals(extra, value, params)})"
        as_int = _int_value(value)
        rest = f"({field} IS NULL AND {json_equals(extra, value, params)})"
        if as_int is None:
            return rest
        return f"({field} = {params.add(as_int)}::bigint OR {rest})"

    def compares(self, cond: Cond, params: Params) -> str:
        field, op, value = cond.field, cond.op, cond.value
        kind = self.kinds.get(field)
        extra = self._extra(field)
        if kind is None:
            return json_compares(extra, op, value, params)
        field = self._column(field)
        if kind == JSON:
            return json_compares(f"coalesce({field}, {extra})", op, value, params)

        def rest() -> str:  # the value kept in extra, for a document whose value does not fit the column
            return f"({field} IS NULL AND {json_compares(extra, op, value, params)})"

        if kind == TEXT:
            if isinstance(value, str):
                column = f"({field} COLLATE \"C\" {op} {params.add(value)}::text)"
                return f"({column} OR {rest()})" if cond.field == self.key_column else column
            return rest()
        if isinstance(value, str):
            return rest()
        if isinstance(value, float) and math.isnan(value):
            return f"({field} IS NOT NULL OR {rest()})" if op == "!=" else "FALSE"
        if isinstance(value, int) and -INT64 <= value < INT64:
            column = f"{field} {op} {params.add(value)}::bigint"
        else:
            column = f"{field}::numeric {op} {_number(value, params)}"
        return f"({column} OR {rest()})"

    def index_ddl(self, field: str) -> str | None:
        name = index_name(self.table, self.collection, field)
        if field == self.key_column:
            return None
        if field in self.kinds:
            return f"CREATE INDEX IF NOT EXISTS {name} ON {self.table} ({field})"
        return f"CREATE INDEX IF NOT EXISTS {name} ON {self.table} ((extra -> '{field}'))"


def _array(cast: str) -> str:
    return "text[]::jsonb[]" if cast == "jsonb" else f"{cast}[]"


def json_array(values: Sequence[Any]) -> list[str | None]:
    """JSON values as the text array `Layout.flush_sql` expects for a ``jsonb[]`` (None stays NULL)."""
    return [None if v is None else dumps_str(v) for v in values]


def _fits(kind: str, value: Any) -> bool:
    if value is _MISSING or value is None:
        return False
    if kind == TEXT:
        return isinstance(value, str)
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool) and -INT64 <= value < INT64
    return True


def index_name(table: str, collection: str, field: str) -> str:
    """A valid, stable identifier under PostgreSQL's 63 bytes: readable part plus a hash."""
    digest = hashlib.blake2b(f"{table}/{collection}/{field}".encode(), digest_size=5).hexdigest()
    readable = f"{collection}_{field}".replace(".", "_")[:40]
    return f"ix_{readable}_{digest}"


def _check_user(key: str, doc: Doc) -> None:
    if not isinstance(doc.get("password"), str):
        raise ValueError("auth.users: a user needs a password (a string)")


def _check_session(key: str, doc: Doc) -> None:
    """Any document will do: the digest column is the key."""


USERS = TypedLayout(
    "auth.users",
    "users",
    [("username", TEXT), ("password", TEXT), ("roles", JSON), ("created", INT)],
    "ts_get_user",
    _check_user,
)
SESSIONS = TypedLayout(
    "auth.sessions",
    "sessions",
    [
        ("digest", TEXT),
        ("username", TEXT),
        ("family", TEXT),
        ("created", INT),
        ("expires", INT),
        ("retired", INT),
        ("successor", TEXT),
    ],
    "ts_get_session",
    _check_session,
)
TYPED = {USERS.collection: USERS, SESSIONS.collection: SESSIONS}


_DOCUMENT_LAYOUTS: dict[str, DocumentLayout] = {}


def layout(collection: str) -> Layout:
    """The layout of ``collection`` (a `DocumentLayout` for any but users and sessions, made once per name)."""
    found = TYPED.get(collection) or _DOCUMENT_LAYOUTS.get(collection)
    if found is None:
        found = _DOCUMENT_LAYOUTS[collection] = DocumentLayout(collection)
    return found
