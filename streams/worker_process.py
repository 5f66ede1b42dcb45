"""An evaluator worker in a process of its own: how the demo (and the tests) run one beside them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Sequence

from streams.config import KafkaSettings


def start_evaluator(settings: KafkaSettings, app_id: str, state_dir: str, *args: str,
                    global_args: Sequence[str] = ()) -> subprocess.Popen:
    """``shadowcanary [global_args] evaluate --app-id ... --state-dir ... [args]``; its output goes to
    ``<state_dir>.log``."""
    env = {**os.environ, "KAFKA_BOOTSTRAP": settings.bootstrap_servers,
           "SHADOWCANARY_TOPIC_PREFIX": settings.topic_prefix}
    log = open(f"{state_dir}.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", *global_args, "evaluate", "--app-id", app_id, "--state-dir", state_dir,
         *args], env=env, stdout=log, stderr=log)


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
