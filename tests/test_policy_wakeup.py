"""The policy engine's loop wakes as soon as the merger has merged new totals (not at its next
tick), but never sooner than its earliest allowed tick."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from streams.worker.policy import PolicyService


def service() -> PolicyService:
    merger = SimpleNamespace(merged=threading.Event())
    return PolicyService(settings=None, topics=None, app_id="t", merger=merger)


def test_new_totals_wake_the_engine_and_are_taken():
    policy = service()
    policy.merger.merged.set()
    now = time.monotonic()
    policy._wait_for_news(deadline=now + 3600, earliest=now - 1)  # would block for an hour otherwise
    assert not policy.merger.merged.is_set()


def test_without_news_the_engine_ticks_at_its_deadline():
    policy = service()
    now = time.monotonic()
    policy._wait_for_news(deadline=now - 1, earliest=now - 1)
    assert not policy.merger.merged.is_set()


def test_news_before_the_earliest_tick_waits_for_it():
    policy = service()
    policy.merger.merged.set()
    start = time.monotonic()
    policy._wait_for_news(deadline=start + 3600, earliest=start + 0.2)
    assert time.monotonic() >= start + 0.2
    assert not policy.merger.merged.is_set()
