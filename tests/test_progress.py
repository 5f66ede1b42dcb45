"""The worker's progress line: it says when the join stops moving while records wait."""

from __future__ import annotations

from evaluators.policy.engine import RolloutEngine
from streams.worker.progress import ProgressLog


def test_the_progress_line_names_a_join_that_stopped_while_behind():
    joined, lag = [100], {("inference.labels", 0): 0}
    progress = ProgressLog(lambda: joined[0], lambda: lag, lambda: True, lambda: RolloutEngine(), every_s=30)
    assert "100 events joined, 0 records behind; merger owner yes" in progress.line(0.0)
    lag[("inference.labels", 0)] = 5_000
    assert "no progress for 30s while records wait" in progress.line(30.0)
    assert "no progress for 60s while records wait" in progress.line(60.0)
    joined[0] = 200
    line = progress.line(90.0)
    assert "200 events joined, 5,000 records behind" in line and "no progress" not in line
    assert line.endswith("rollouts 0 active")


def test_a_join_that_never_started_is_reported_once_with_where_the_loop_stands():
    where = ["MainThread: cimpl consume <- worker/loop.py:160 turn"]
    progress = ProgressLog(lambda: 0, lambda: {}, lambda: True, lambda: None, unstarted=lambda: 900,
                           where=lambda: where, every_s=30)
    assert "0 events joined, 0 records behind (+900 in partitions not started)" in progress.line(0.0)
    assert progress.stall_report(0.0) is None
    progress.line(30.0)
    assert progress.stall_report(30.0) is None  # one still line: not yet
    progress.line(60.0)
    assert progress.stall_report(60.0) == (
        "join stalled: no events joined for 60s while records wait; where the "
        "worker's loop stands:\n  MainThread: cimpl consume <- worker/loop.py:160 turn"
    )
    progress.line(90.0)
    assert progress.stall_report(90.0) is None  # once per stall


def test_the_thread_state_names_where_a_thread_is_busy():
    import threading
    import time

    from streams.worker.progress import thread_state

    gate = threading.Event()

    def innermost() -> None:
        while not gate.is_set():  # busy in this frame (time.sleep is C: no frame of its own)
            time.sleep(0.005)

    def outer() -> None:
        innermost()

    thread = threading.Thread(target=outer, name="the-join")
    thread.start()
    try:
        time.sleep(0.1)
        [state] = thread_state(thread)
    finally:
        gate.set()
        thread.join()
    assert state.startswith("the-join: ")
    assert "test_progress.py" in state and " innermost <- " in state and " outer <- " in state
    assert thread_state(thread) == ["the-join: not running"]


def test_a_background_loop_that_stopped_going_round_is_named():
    from streams.background import BackgroundService

    merger, policy = BackgroundService(), BackgroundService()
    merger.thread_name, policy.thread_name = "shadowcanary-merger", "shadowcanary-policy"
    merger.last_loop = policy.last_loop = 1000.0
    progress = ProgressLog(lambda: 0, lambda: {}, lambda: True, lambda: None, services=(merger, policy), every_s=30)
    assert "stuck" not in progress.line(1010.0)
    policy.went_round()
    policy.last_loop = 1090.0
    assert progress.line(1100.0).endswith("; shadowcanary-merger loop stuck for 100s")


def test_a_worker_that_is_not_the_owner_says_so():
    progress = ProgressLog(lambda: 0, lambda: {}, lambda: False, lambda: None)
    assert progress.line(0.0).endswith("merger owner no, 0 windows published; rollouts not owned here")


def test_a_log_digest_gives_each_error_with_its_exception_and_the_last_progress(tmp_path):
    from streams.worker.process import log_digest

    log = tmp_path / "evaluator.log"
    log.write_text(
        "[2026-11-22 07:37:20,000] [1] [INFO] progress: 10 events joined, 0 records behind; merger owner yes\n"
        "[2026-11-22 07:37:51,066] [1] [WARNING] producer buffer full size 590 \n"
        "[2026-11-22 07:37:51,073] [1] [ERROR] policy engine stopped; restarting from its saved state \n"
        "Traceback (most recent call last):\n"
        '  File "/work/main/streams/worker/policy.py", line 83, in _run\n'
        "    self._own()\n"
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for GuardrailEvidence\n"
        "statistic\n"
        "  Input should be a finite number\n"
        "[2026-11-22 07:37:50,000] [1] [INFO] progress: 20 events joined, 0 records behind; merger owner yes\n"
        "[2026-11-22 07:38:20,000] [1] [ERROR] join stalled: no events joined for 60s while records wait; where:\n"
        "  loop thread: selectors.py:468 select\n"
        "  task join: streams/app.py:101 _run\n")
    assert log_digest(log) == [
        "[2026-11-22 07:37:51,073] [1] [ERROR] policy engine stopped; restarting from its saved state | "
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for GuardrailEvidence",
        "[2026-11-22 07:38:20,000] [1] [ERROR] join stalled: no events joined for 60s while records wait; where: | "
        "loop thread: selectors.py:468 select | task join: streams/app.py:101 _run",
        "[2026-11-22 07:37:20,000] [1] [INFO] progress: 10 events joined, 0 records behind; merger owner yes",
        "[2026-11-22 07:37:50,000] [1] [INFO] progress: 20 events joined, 0 records behind; merger owner yes"]
    assert log_digest(tmp_path / "none.log") == [f"(no log at {tmp_path / 'none.log'})"]


def test_a_worker_loop_stuck_in_one_turn_is_named_and_reported_once():
    began = 0.0
    progress = ProgressLog(lambda: 5, lambda: {}, lambda: True, lambda: None, where=lambda: ["MainThread: restore"],
                           every_s=30, loop_went_round=lambda: began)
    assert "stuck" not in progress.line(10.0) and progress.stall_report(10.0) is None
    assert "the worker's loop stuck in one turn for 40s" in progress.line(40.0)
    assert progress.stall_report(40.0) is None  # not yet two intervals
    progress.line(70.0)
    assert progress.stall_report(70.0) == ("the worker's loop has been in one turn for 70s; where the worker's "
                                           "loop stands:\n  MainThread: restore")
    progress.line(100.0)
    assert progress.stall_report(100.0) is None  # once per stall
    began = 100.0
    assert "stuck" not in progress.line(101.0)


def test_the_progress_line_names_the_partitions_still_restoring():
    restoring = {2, 0}
    progress = ProgressLog(lambda: 10, lambda: {}, lambda: True, lambda: None, restoring=lambda: restoring)
    assert progress.line(0.0).endswith("rollouts not owned here; partitions [0, 2] restoring")
    restoring.clear()
    assert "restoring" not in progress.line(30.0)
