"""A call into librdkafka that must return by a deadline, whatever librdkafka does with its timeout.

The transactional producer's ``send_offsets_to_transaction`` can block for good, past the timeout it
is given: the group coordinator request never checks its timeout (librdkafka #5456), and after a
broker restart the coordinator stays cached on a decommissioned broker whose thread is gone, so
nothing wakes the request up (librdkafka #5511). Seen here under load: the worker's loop stood in
that call for minutes with the broker back. The loop therefore makes each transactional call in a
helper thread and waits for it at most a deadline; a call still running then is given up, with its
producer (:meth:`streams.worker.loop.BatchLoop._restart_producer` settles the transaction through a
new one).

>>> call_with_deadline(lambda: 42, 1.0, "an answer")
42
>>> try:
...     call_with_deadline(lambda: __import__("time").sleep(5), 0.05, "a nap")
... except CallStuck as exc:
...     print(exc)
a nap did not return within 0.05s
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class CallStuck(Exception):
    """A librdkafka call that did not return by its deadline: its client must not be used again."""


def call_with_deadline(call: Callable[[], Any], deadline_s: float, what: str) -> Any:
    """``call()``'s result (or its exception), or :class:`CallStuck` after ``deadline_s``. The call
    runs in a daemon thread of its own, which is left behind if it never returns (it holds only the
    abandoned client)."""
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="shadowcanary-client-call", daemon=True).start()
    if not done.wait(deadline_s):
        raise CallStuck(f"{what} did not return within {deadline_s:g}s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


__all__ = ["CallStuck", "call_with_deadline"]
