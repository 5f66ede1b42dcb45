"""A worker's state folder: local table state written by a worker that died is dropped (the tables
are rebuilt from their changelogs); after a clean stop it is kept.

The table data here is written through faust's own RocksDB store, so the test checks the folders
faust really uses (an earlier version removed a path faust never wrote, and a restarted worker
mixed its predecessor's local writes with the changelog).
"""

from __future__ import annotations

from pathlib import Path

from faust.stores import rocksdb

from streams.app import AppOptions, create_app
from streams.config import KafkaSettings
from streams.evaluator import RUNNING_MARK, mark_clean_stop, prepare_state_dir



def _write_table_partition(state_dir: Path) -> tuple[Path, Path]:
    """Write one key through faust's RocksDB store, as a worker would; (table dir, partition db)."""
    app = create_app(KafkaSettings(bootstrap_servers="127.0.0.1:1"),
                     AppOptions(app_id="state-dir-test", store="rocksdb://", data_dir=str(state_dir)))
    table = app.Table("join-state", partitions=2, key_type=bytes, value_type=bytes)
    store = rocksdb.Store("rocksdb://", app, table)
    store._db_for_partition(0)[b"p0"] = b"{}"
    return Path(app.conf.tabledir), Path(store.partition_path(0))


def test_state_of_a_worker_that_died_is_dropped(tmp_path):
    state_dir = tmp_path / "worker"
    assert prepare_state_dir(state_dir, state_dir / "unused") == []  # first start: nothing to drop
    table_dir, partition_db = _write_table_partition(state_dir)
    assert partition_db.exists() and partition_db.is_relative_to(table_dir)
    # The worker is SIGKILLed: its running mark stays. The next start drops the tables.
    notes = prepare_state_dir(state_dir, table_dir)
    assert notes == ["the previous worker stopped uncleanly: rebuilding state from the changelog"]
    assert not partition_db.exists() and not table_dir.exists()
    assert (state_dir / RUNNING_MARK).exists()  # the new worker's own mark


def test_state_of_a_clean_stop_is_kept(tmp_path):
    state_dir = tmp_path / "worker"
    prepare_state_dir(state_dir, state_dir / "unused")
    table_dir, partition_db = _write_table_partition(state_dir)
    mark_clean_stop(state_dir)
    assert prepare_state_dir(state_dir, table_dir) == []
    assert partition_db.exists()
