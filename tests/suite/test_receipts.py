"""The listener's compact receipts give the same answers as a dict of Received per pair
(counts, first arrival, corruption, every digest seen). Their memory is measured in
bench/receipts_memory.py."""

from __future__ import annotations

import hashlib
import random

from nightly_pipeline.suite.delivery import Sent, judge_delivery
from nightly_pipeline.suite.receipts import CHUNK_ROWS, Receipts, Received


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _reference_fold(frames) -> dict[tuple[str, str], Received]:
    """The obvious per-pair dict the compact store replaces."""
    out: dict[tuple[str, str], Received] = {}
    for message_id, label, digest, matches, at in frames:
        got = out.setdefault((message_id, label), Received())
        got.count += 1
        got.first_at = got.first_at if got.count > 1 else at
        got.digests.add(digest)
        got.corrupted += not matches
    return out


def test_answers_match_a_dict_of_received_pairs_with_duplicates_and_corruption() -> None:
    rng = random.Random(7)
    labels = [f"u{i}#0" for i in range(5)]
    frames = []
    for n in range(CHUNK_ROWS + 500):  # crosses a chunk boundary
        message_id = f"m{n}"
        for label in rng.sample(labels, 3):
            digest = _digest(message_id)
            if rng.random() < 0.01:
                digest = _digest(f"swapped {n}")  # another body than the message's first
            frames.append((message_id, label, digest, rng.random() > 0.01, float(n)))
            if rng.random() < 0.01:
                frames.append((message_id, label, digest, True, float(n) + 0.5))  # duplicate
    frames.append(("m1", "late#9", "not hex at all", True, 99.0))  # a label nobody announced
    compact, expected = Receipts(tuple(labels)), _reference_fold(frames)
    for frame in frames:
        compact.add(*frame)
    assert len(compact) == len(expected)
    assert set(compact) == set(expected)
    for key, want in expected.items():
        assert compact[key] == want, key
    assert ("m1", "nobody") not in compact and compact.get(("nope", "u1#0")) is None


def test_the_verdict_is_the_same_on_both() -> None:
    sent = {f"m{n}": Sent("c1", _digest(f"m{n}"), 0.0) for n in range(50)}
    frames = [(m, "u1", s.sha256, True, 0.01) for m, s in sent.items() if m != "m3"]
    frames.append(("m4", "u1", _digest("other"), True, 0.02))  # a second, wrong body
    frames.append(("m5", "u1", sent["m5"].sha256, True, 0.03))  # delivered twice
    compact = Receipts(("u1",))
    for frame in frames:
        compact.add(*frame)
    want = judge_delivery(sent, {"c1": ("u1",)}, _reference_fold(frames))
    got = judge_delivery(sent, {"c1": ("u1",)}, compact)
    assert (got.lost, got.duplicated, got.corrupted) == (1, 2, 1)
    assert got == want
