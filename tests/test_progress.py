"""The worker's progress line: it says when the join stops moving while records wait."""

from __future__ import annotations

from evaluators.policy.engine import RolloutEngine
from streams.progress import ProgressLog


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
    where = ["loop thread: selectors.py:468 select", "task join: aiokafka/fetcher.py:100 wait"]
    progress = ProgressLog(lambda: 0, lambda: {}, lambda: True, lambda: None, unstarted=lambda: 900,
                           where=lambda: where, every_s=30)
    assert "0 events joined, 0 records behind (+900 in partitions not started)" in progress.line(0.0)
    assert progress.stall_report(0.0) is None
    progress.line(30.0)
    assert progress.stall_report(30.0) is None  # one still line: not yet
    progress.line(60.0)
    assert progress.stall_report(60.0) == ("join stalled: no events joined for 60s while records wait; where the "
                                           "event loop stands:\n  loop thread: selectors.py:468 select\n"
                                           "  task join: aiokafka/fetcher.py:100 wait")
    progress.line(90.0)
    assert progress.stall_report(90.0) is None  # once per stall


def test_the_event_loop_state_names_what_each_task_awaits():
    import asyncio
    import threading

    from streams.progress import event_loop_state

    async def innermost(gate: asyncio.Event) -> None:
        await gate.wait()

    async def outer(gate: asyncio.Event) -> None:
        await innermost(gate)

    async def main() -> list[str]:
        gate = asyncio.Event()
        task = asyncio.create_task(outer(gate), name="the-join")
        await asyncio.sleep(0)
        state = await asyncio.to_thread(event_loop_state, asyncio.get_running_loop(), threading.current_thread())
        gate.set()
        await task
        return state

    state = asyncio.run(main())
    assert state[0].startswith("loop thread: ")
    [joined] = [line for line in state if line.startswith("task the-join: ")]
    assert "wait <- " in joined and "innermost <- " in joined and joined.endswith(" outer")


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
    from streams.worker_process import log_digest

    log = tmp_path / "evaluator.log"
    log.write_text(
        "[2026-11-22 07:37:20,000] [1] [INFO] progress: 10 events joined, 0 records behind; merger owner yes\n"
        "[2026-11-22 07:37:51,066] [1] [WARNING] producer buffer full size 590 \n"
        "[2026-11-22 07:37:51,073] [1] [ERROR] policy engine stopped; restarting from its saved state \n"
        "Traceback (most recent call last):\n"
        '  File "/work/main/streams/policy.py", line 83, in _run\n'
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
