"""A real broker for benchmarks: ``KAFKA_BOOTSTRAP`` if set, else the local launcher on a free port."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from streams.kafka.local_broker import LocalBroker, free_port


@contextlib.contextmanager
def broker() -> Iterator[str]:
    if os.environ.get("KAFKA_BOOTSTRAP"):
        yield os.environ["KAFKA_BOOTSTRAP"]
        return
    with tempfile.TemporaryDirectory(prefix="sc-bench-") as home:
        instance = LocalBroker(Path(home), port=free_port(), controller_port=free_port(), heap="1g")
        instance.up()
        try:
            yield f"127.0.0.1:{instance.port}"
        finally:
            instance.down(purge=True)
