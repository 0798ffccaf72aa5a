"""Each part of the JSON store on its own: tables, journal, snapshot, shared files, compaction."""

from __future__ import annotations

import itertools
import os

import pytest

from core.jsondb import compaction, journal, snapshot
from core.jsoncodec import dumps
from core.jsondb.load import load
from core.jsondb.shared import ChangeCounter, FileLock
from core.jsondb.tables import Table, apply, index_key
from core.store import StoreCorrupt

VALUES = [0, 1, 1.0, True, False, None, "1", "", [1], [1.0], [True], ["1"], [], {}, {"a": 1}, {"a": 1.0}, {"a": [1]}, {"a": [1.0]}, {"b": 1}]


def line(*ops: tuple[str, str, dict | None], ids: dict[str, int] | None = None) -> bytes:
    record: dict = {"at": 1.0, "ops": [{"c": c, "k": k, "v": v} for c, k, v in ops]}
    if ids:
        record["ids"] = ids
    return dumps(record) + b"\n"


# -- tables ---------------------------------------------------------------------------


def test_index_keys_are_equal_exactly_when_the_values_are():
    for a, b in itertools.product(VALUES, repeat=2):
        assert (index_key(a) == index_key(b)) == (a == b), (a, b)
        if a == b:
            assert hash(index_key(a)) == hash(index_key(b)), (a, b)


def test_a_table_keeps_its_indexes_in_step():
    table = Table(["owner"])
    table.set("a", {"owner": "x"})
    table.set("b", {"owner": "x"})
    table.set("a", {"owner": "y"})
    table.set("b", None)
    assert table.indexes["owner"] == {"y": {"a"}}
    table.add_index("missing")
    assert table.indexes["missing"] == {None: {"a"}}


def test_apply_creates_indexed_tables_and_never_moves_a_counter_back():
    tables: dict[str, Table] = {}
    apply(tables, {"t.a": {"k": {"owner": "x"}}}, {"t.a": 5}, {"t.a": {"owner"}})
    apply(tables, {}, {"t.a": 3, "t.b": 2}, {})
    assert tables["t.a"].indexes == {"owner": {"x": {"k"}}}
    assert (tables["t.a"].next_id, tables["t.b"].next_id) == (5, 2)


# -- journal --------------------------------------------------------------------------


def test_append_drops_a_torn_tail_and_refuses_a_shrunk_file(tmp_path):
    journals = journal.Journals(tmp_path)
    first = line(("t.a", "k", {"n": 1}))
    end = journals.append(1, 0, first)
    with open(journals.path(1), "ab") as handle:
        handle.write(b'{"at":1,"ops":[')  # a crash mid-write
    second = line(("t.a", "k", None))
    assert journals.append(1, end, second) == len(first) + len(second)
    assert journals.path(1).read_bytes() == first + second
    with pytest.raises(StoreCorrupt, match="shrank"):
        journals.append(1, end + len(second) + 5, second)
    assert journals.truncate(1, end) and journals.path(1).read_bytes() == first
    assert not journals.truncate(1, end + 100), "truncate never grows a file"
    assert journals.generations() == [1]


def test_replay_applies_complete_lines_and_leaves_a_torn_tail(tmp_path):
    data = line(("t.a", "k", {"n": 1}), ids={"t.a": 2}) + b"\n" + line(("t.a", "j", {"n": 2})) + b'{"at":1,"o'
    seen = []
    consumed = journal.replay(tmp_path / "j", data, 0, lambda changes, ids: seen.append((changes, ids)))
    assert consumed == data.rfind(b"\n") + 1
    assert seen == [({"t.a": {"k": {"n": 1}}}, {"t.a": 2}), ({"t.a": {"j": {"n": 2}}}, {})]


@pytest.mark.parametrize("bad, problem", [
    (b"nope", "not valid JSON"),
    (b'{"at": 1}', "'ops' list"),
    (b'{"ops": [{"c": "Bad", "k": "k", "v": null}]}', "bad operation"),
    (b'{"ops": [{"c": "t.a", "k": 1, "v": null}]}', "bad operation"),
    (b'{"ops": [], "ids": {"t.a": "5"}}', "'ids'"),
])
def test_a_bad_journal_line_is_named(tmp_path, bad, problem):
    with pytest.raises(StoreCorrupt, match=rf"journal\.x line 3: .*{problem}"):
        journal.parse_line(tmp_path / "journal.x", bad, 0, 3)
    with pytest.raises(StoreCorrupt, match=r"line 3 after byte 40"):
        journal.parse_line(tmp_path / "journal.x", bad, 40, 3)


# -- snapshot -------------------------------------------------------------------------


def test_a_snapshot_reads_back_what_was_written(tmp_path):
    tables = {"t.a": Table(), "t.b": Table()}
    tables["t.a"].docs = {"k": {"n": 1}, "j": {"n": [2]}}
    tables["t.b"].next_id = 7
    snapshot.write(tmp_path, tables, 3)
    read, generation, size = snapshot.read(tmp_path / snapshot.SNAPSHOT)
    assert generation == 3 and size == (tmp_path / snapshot.SNAPSHOT).stat().st_size
    assert {n: (t.docs, t.next_id) for n, t in read.items()} == {"t.a": (tables["t.a"].docs, 1), "t.b": ({}, 7)}
    assert snapshot.read_header(tmp_path / snapshot.SNAPSHOT)["generation"] == 3


def test_merging_keeps_unchanged_lines_and_applies_changes(tmp_path):
    tables = {"t.a": Table()}
    tables["t.a"].docs = {"same": {"n": 0}, "changed": {"n": 1}, "gone": {"n": 2}}
    snapshot.write(tmp_path, tables, 1)
    changes = {("t.a", "changed"): {"n": 10}, ("t.a", "gone"): None, ("t.a", "new"): {"n": 3}}
    merged = list(snapshot.merged_lines(tmp_path / snapshot.SNAPSHOT, changes))
    assert merged == [dumps({"c": "t.a", "k": k, "v": v}) + b"\n" for k, v in
                      (("same", {"n": 0}), ("changed", {"n": 10}), ("new", {"n": 3}))]


# -- shared files ---------------------------------------------------------------------


def test_a_bump_is_seen_by_every_counter_on_the_directory(tmp_path, monkeypatch):
    one, two = ChangeCounter(tmp_path), ChangeCounter(tmp_path)
    one.open()
    two.open()
    before = two.now()
    one.bump()
    assert two.now() == before + 1 and one.seen == before + 1
    monkeypatch.setattr(ChangeCounter, "_map", lambda self: None)
    unmapped = ChangeCounter(tmp_path)
    unmapped.open()
    assert unmapped.now() is None
    unmapped.bump()  # through the file
    assert two.now() == before + 2
    for counter in (one, two, unmapped):
        counter.close()


def test_the_file_lock_excludes_a_second_holder_even_in_this_process(tmp_path):
    lock = FileLock(tmp_path / ".lock")
    with lock.held():
        with pytest.raises(BlockingIOError):
            lock.acquire(blocking=False)
    os.close(lock.acquire(blocking=False))  # free again once let go


# -- compaction -----------------------------------------------------------------------


def test_compaction_from_the_files_alone_keeps_every_record_and_counter(tmp_path):
    journals = journal.Journals(tmp_path)
    end = journals.append(1, 0, line(("t.a", "k", {"n": 1}), ("t.a", "gone", {"n": 0}), ids={"t.a": 4}))
    journals.append(1, end, line(("t.a", "gone", None), ("t.b", "x", {"n": 2})))
    size = compaction.compact(tmp_path)
    assert size == (tmp_path / snapshot.SNAPSHOT).stat().st_size
    assert journals.generations() == [1, 2], "journal 1 is frozen and kept with the previous state"
    journals.append(2, 0, line(("t.a", "late", {"n": 3})))
    assert compaction.compact(tmp_path) > 0
    assert journals.generations() == [2, 3] and (tmp_path / snapshot.PREV_SNAPSHOT).exists()
    loaded = load(tmp_path, repair=False)
    assert {n: (t.docs, t.next_id) for n, t in loaded.tables.items()} == {
        "t.a": ({"k": {"n": 1}, "late": {"n": 3}}, 4),
        "t.b": ({"x": {"n": 2}}, 1),
    }
    with FileLock(tmp_path / ".compact.lock").held():
        assert compaction.compact(tmp_path) == 0, "a second compaction at once does nothing"
