"""A fresh SQLite ledger built by replaying the cached statements is the ledger create_all and the stamp
build, at the head revision; a damaged cache is ignored and the ledger built the usual way."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from wflo_core.ledger import migrations
from wflo_core.ledger.revisions import migration_heads


def schema(db: Path) -> tuple[list[tuple[str, ...]], list[str]]:
    with sqlite3.connect(db) as conn:
        objects = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name").fetchall()
        revisions = [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]
    return objects, revisions


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "wflo"


def build(tmp_path: Path, name: str) -> Path:
    db = tmp_path / name
    migrations.upgrade(f"sqlite:///{db}")
    return db


def test_a_ledger_replayed_from_the_cache_is_the_ledger_create_all_builds(
    tmp_path: Path, cache_home: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    fresh = build(tmp_path, "fresh.db")
    assert len(list(cache_home.glob("sqlite-ledger-*.json"))) == 1

    def no_create_all(*_: object) -> None:
        raise AssertionError("the cached statements were not used")

    monkeypatch.setattr(migrations, "_create_and_stamp", no_create_all)
    replayed = build(tmp_path, "replayed.db")
    objects, revisions = schema(replayed)
    assert (objects, revisions) == schema(fresh)
    assert len([kind for kind, *_ in objects if kind == "table"]) > 5
    assert revisions == list(migration_heads())
    migrations.upgrade(f"sqlite:///{replayed}")  # at the head already: nothing is replayed twice
    assert schema(replayed) == schema(fresh)


@pytest.mark.parametrize("damage", [
    lambda text: text[: len(text) // 2],  # cut short
    lambda text: '[["CREATE TABLE llm_calls (id INTEGER)", []], ["THIS IS NOT SQL", []]]',  # fails half way
    lambda text: '{"not": "a list"}',
])
def test_a_damaged_cache_is_ignored(tmp_path: Path, cache_home: Path, damage: object) -> None:
    fresh = build(tmp_path, "fresh.db")
    (cache,) = cache_home.glob("sqlite-ledger-*.json")
    recorded = cache.read_text()
    cache.write_text(damage(recorded))  # type: ignore[operator]
    rebuilt = build(tmp_path, "rebuilt.db")
    assert schema(rebuilt) == schema(fresh)
    assert cache.read_text() == recorded  # rewritten by the build that did not trust it
    assert build(tmp_path, "third.db") and schema(tmp_path / "third.db") == schema(fresh)


def test_an_unwritable_cache_is_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cache").write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    objects, revisions = schema(build(tmp_path, "ledger.db"))
    assert revisions == list(migration_heads()) and objects
