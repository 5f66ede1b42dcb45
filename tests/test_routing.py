"""Routing: sticky shares, cohorts, shadows, and the gate that refuses forged, stale and replayed commands."""

from __future__ import annotations

import uuid

from evaluators.routing import Assignment, RouteBook
from schemas.control import RoutingCommand
from schemas.signing import Ed25519Signer, HmacKey, sign_command

SUBJECTS = [f"user-{i}" for i in range(100_000)]


def command(epoch: int, routes: dict[str, float], **extra) -> RoutingCommand:
    values = dict(model="fraud", epoch=epoch, issued_at=0, issuer="evaluator", action="set_routes",
                  routes=routes, reason="test", rollout_id="r1", baseline="v1")
    return RoutingCommand(**(values | extra))


def canary_subjects(book: RouteBook) -> set[str]:
    return {s for s in SUBJECTS if book.route("fraud", s).serve == "v2"}


def test_canary_share_matches_the_routes_and_only_grows_as_it_rises():
    book = RouteBook(baselines={"fraud": "v1"})
    previous: set[str] = set()
    for epoch, share in enumerate([1, 5, 10, 25, 50, 75, 100]):
        assert book.apply(command(epoch, {"v1": 100 - share, "v2": share})) is None
        current = canary_subjects(book)
        assert abs(100 * len(current) / len(SUBJECTS) - share) < 0.5, share
        assert previous <= current  # nobody goes back from the canary to the baseline
        previous = current


def test_assignment_is_stable_within_a_rollout_and_redrawn_for_a_new_one():
    book = RouteBook(baselines={"fraud": "v1"})
    book.apply(command(0, {"v1": 90, "v2": 10}))
    first = canary_subjects(book)
    book.apply(command(1, {"v1": 90, "v2": 10}))  # same rollout, same shares: same people
    assert canary_subjects(book) == first
    book.apply(command(2, {"v1": 90, "v2": 10}, rollout_id="r2"))
    second = canary_subjects(book)
    assert abs(len(second) - len(first)) < 1000 and len(first & second) < 0.2 * len(first)


def test_three_way_split_and_shadow_mirrors():
    book = RouteBook(baselines={"fraud": "v1"})
    book.apply(command(0, {"v1": 50, "v2": 30, "v3": 20}, shadow=["v4"]))
    served: dict[str, int] = {}
    for subject in SUBJECTS:
        assignment = book.route("fraud", subject)
        assert assignment.mirror == ("v4",)
        served[assignment.serve] = served.get(assignment.serve, 0) + 1
    assert {v: round(100 * n / len(SUBJECTS)) for v, n in served.items()} == {"v1": 50, "v2": 30, "v3": 20}


def test_no_history_serves_the_baseline_and_an_unknown_model_is_an_error():
    book = RouteBook(baselines={"fraud": "v1"})
    assert book.route("fraud", "anyone") == Assignment("v1")
    assert book.serving("fraud") == {"v1": 100.0}
    try:
        book.route("other", "anyone")
    except LookupError as exc:
        assert "other" in str(exc)
    else:
        raise AssertionError("an unknown model must not be routed silently")


def test_cohort_rules_restrict_who_can_get_the_canary():
    book = RouteBook(baselines={"fraud": "v1"}, cohorts={"fraud": {"region": "eu"}})
    book.apply(command(0, {"v1": 0, "v2": 100}))
    assert book.route("fraud", "a", {"region": "eu", "tier": "gold"}).serve == "v2"
    assert book.route("fraud", "a", {"region": "us"}).serve == "v1"
    assert book.route("fraud", "a").serve == "v1"


def test_without_a_key_only_the_epoch_is_checked():
    book = RouteBook(baselines={"fraud": "v1"})
    assert book.apply(command(3, {"v1": 50, "v2": 50})) is None
    assert book.apply(command(3, {"v1": 0, "v2": 100})).startswith("stale: epoch 3 is not higher than 3")
    assert book.apply(command(2, {"v1": 0, "v2": 100})).startswith("stale")
    assert book.serving("fraud") == {"v1": 50, "v2": 50}


def test_with_a_key_forged_unsigned_stale_and_replayed_commands_are_refused():
    key = HmacKey(b"s" * 32)
    book = RouteBook(baselines={"fraud": "v1"}, verifier=key)
    first = sign_command(command(1, {"v1": 90, "v2": 10}), key)
    assert book.apply(first) is None
    # Unsigned, and signed by someone else (a forger without the key).
    assert book.apply(command(2, {"v1": 0, "v2": 100})).startswith("unsigned")
    forged = sign_command(command(2, {"v1": 0, "v2": 100}), HmacKey(b"x" * 32))
    assert book.apply(forged).startswith("bad signature")
    # A genuine command altered in flight.
    altered = sign_command(command(2, {"v1": 80, "v2": 20}), key).model_copy(update={"routes": {"v1": 0, "v2": 100}})
    assert book.apply(altered).startswith("bad signature")
    # The very same command again, and a genuine one with an old epoch.
    assert book.apply(first).startswith("replayed")
    old = sign_command(command(0, {"v1": 0, "v2": 100}, command_id=uuid.uuid4()), key)
    assert book.apply(old).startswith("stale")
    assert book.serving("fraud") == {"v1": 90, "v2": 10}
    # A replayed id is refused even with a higher epoch a forger could not sign anyway.
    replay = sign_command(command(5, {"v1": 0, "v2": 100}, command_id=first.command_id), key)
    assert book.apply(replay).startswith("replayed")
    good = sign_command(command(2, {"v1": 0, "v2": 100}), key)
    assert book.apply(good) is None and book.serving("fraud") == {"v1": 0, "v2": 100}


def test_ed25519_signed_commands_are_accepted_by_the_public_key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    signer = Ed25519Signer(Ed25519PrivateKey.generate())
    book = RouteBook(baselines={"fraud": "v1"}, verifier=signer.verifier())
    assert book.apply(sign_command(command(0, {"v1": 75, "v2": 25}), signer)) is None
    assert book.apply(sign_command(command(1, {"v1": 0, "v2": 100}), HmacKey(b"k" * 32))).startswith("bad signature")
