"""A worker's state folder: local tables written by a worker that died are dropped (they are rebuilt
from the changelog); after a clean stop they are kept, with the checkpoint that lets the next start
read only the changelog after it.

The table data here is written through the worker's own RocksDB store, at the path the join stage
opens, so the test checks the folders the worker really uses.
"""

from __future__ import annotations

from pathlib import Path

from schemas.internal_topics import JOIN_STATE
from streams.worker.evaluator import RUNNING_MARK, TABLES, mark_clean_stop, prepare_state_dir
from streams.worker.store import NO_CHECKPOINT, PartitionStore


def _write_partition(state_dir: Path, checkpoint: int = 41) -> Path:
    """Commit one key to partition 0's database, as a worker does after a batch's transaction."""
    path = state_dir / TABLES / f"{JOIN_STATE}-0"
    store = PartitionStore.on_disk(path)
    store.set("p", {"wm": 1})
    store.commit_local(checkpoint)
    store.close()
    return path


def test_state_of_a_worker_that_died_is_dropped(tmp_path):
    state_dir = tmp_path / "worker"
    assert prepare_state_dir(state_dir, state_dir / TABLES) == []  # first start: nothing to drop
    partition_db = _write_partition(state_dir)
    assert partition_db.exists()
    # The worker is SIGKILLed: its running mark stays. The next start drops the tables.
    notes = prepare_state_dir(state_dir, state_dir / TABLES)
    assert notes == ["the previous worker stopped uncleanly: rebuilding state from the changelog"]
    assert not partition_db.exists() and not (state_dir / TABLES).exists()
    assert (state_dir / RUNNING_MARK).exists()  # the new worker's own mark
    assert PartitionStore.on_disk(partition_db).checkpoint() == NO_CHECKPOINT  # restored from the start


def test_state_of_a_clean_stop_is_kept_with_its_checkpoint(tmp_path):
    state_dir = tmp_path / "worker"
    prepare_state_dir(state_dir, state_dir / TABLES)
    partition_db = _write_partition(state_dir, checkpoint=41)
    mark_clean_stop(state_dir)
    assert prepare_state_dir(state_dir, state_dir / TABLES) == []
    store = PartitionStore.on_disk(partition_db)
    assert store.checkpoint() == 41 and store.get("p") == {"wm": 1}


def test_an_aborted_batch_leaves_the_database_as_of_the_last_commit(tmp_path):
    store = PartitionStore.on_disk(tmp_path / "db")
    store.set("k", {"n": 1})
    store.commit_local(5)
    store.set("k", {"n": 2})
    store.delete("other")
    assert store.get("k") == {"n": 2}  # the batch reads its own writes
    store.discard()
    assert store.get("k") == {"n": 1} and store.checkpoint() == 5
