"""The worker's progress line: it says when the join stops moving while records wait."""

from __future__ import annotations

from evaluators.policy.engine import RolloutEngine
from streams.progress import ProgressLog


def test_the_progress_line_names_a_join_that_stopped_while_behind():
    joined, lag = [100], {("inference.labels", 0): 0}
    progress = ProgressLog(lambda: joined[0], lambda: lag, lambda: True, lambda: RolloutEngine(), every_s=30)
    assert "100 events joined, 0 records behind; merger owner yes" in progress.line(0.0)
    lag[("inference.labels", 0)] = 5_000
    assert "no progress for 30s while behind" in progress.line(30.0)
    assert "no progress for 60s while behind" in progress.line(60.0)
    joined[0] = 200
    line = progress.line(90.0)
    assert "200 events joined, 5,000 records behind" in line and "no progress" not in line
    assert line.endswith("rollouts 0 active")


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
        "[2026-11-22 07:37:50,000] [1] [INFO] progress: 20 events joined, 0 records behind; merger owner yes\n")
    assert log_digest(log) == [
        "[2026-11-22 07:37:51,073] [1] [ERROR] policy engine stopped; restarting from its saved state | "
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for GuardrailEvidence",
        "[2026-11-22 07:37:20,000] [1] [INFO] progress: 10 events joined, 0 records behind; merger owner yes",
        "[2026-11-22 07:37:50,000] [1] [INFO] progress: 20 events joined, 0 records behind; merger owner yes"]
    assert log_digest(tmp_path / "none.log") == [f"(no log at {tmp_path / 'none.log'})"]
