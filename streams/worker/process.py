"""An evaluator worker in a process of its own: how the demo (and the tests) run one beside them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from streams.kafka.settings import KafkaSettings
from streams.worker.progress import LINE_PREFIX


def start_evaluator(settings: KafkaSettings, app_id: str, state_dir: str, *args: str,
                    global_args: Sequence[str] = ()) -> subprocess.Popen:
    """``shadowcanary [global_args] evaluate --app-id ... --state-dir ... [args]``; its output goes to
    ``<state_dir>.log``."""
    env = {**os.environ, **settings.environment()}
    log = open(f"{state_dir}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "streams.cli", *global_args, "evaluate", "--app-id", app_id,
                             "--state-dir", state_dir, *args], env=env, stdout=log, stderr=log)


def stop_workers(*workers: subprocess.Popen, timeout: float = 60) -> None:
    """Ask each worker to stop cleanly (SIGTERM, as Ctrl-C would); kill the ones that do not."""
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout)
        except subprocess.TimeoutExpired:
            worker.kill()


def log_digest(log_path: Path, errors: int = 6, progress: int = 2, report_lines: int = 12) -> list[str]:
    """What to show of a worker's log when something it should have done did not happen: its last
    ``errors`` error records (each as its first line and, after a traceback, its exception's line;
    a report without a traceback, such as a stall report, with up to ``report_lines`` of its lines)
    and its last ``progress`` progress lines (:mod:`streams.worker.progress`)."""
    if not log_path.exists():
        return [f"(no log at {log_path})"]
    records: list[list[str]] = []
    progress_lines: list[str] = []
    current: list[str] | None = None
    mode = "report"  # of the current error record: "report", "traceback" (frames follow) or "done"
    for raw in log_path.read_text(errors="replace").splitlines():
        if raw.startswith("["):
            current, mode = None, "report"
            if "[ERROR]" in raw or "[CRITICAL]" in raw:
                current = [raw.strip()]
                records.append(current)
            elif LINE_PREFIX in raw:
                progress_lines.append(raw.strip())
        elif current is None or not raw or mode == "done":
            continue
        elif raw.startswith("Traceback"):
            mode = "traceback"
        elif mode == "traceback":
            if not raw.startswith(" "):
                current.append(raw.strip())  # the exception's line, after the traceback's frames
                mode = "done"
        elif len(current) <= report_lines:
            current.append(raw.strip())
    lines = [" | ".join(record) for record in records[-errors:]] + progress_lines[-progress:]
    return lines or ["(no errors and no progress lines in the log)"]
