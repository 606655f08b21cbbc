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


def test_with_a_layout_rows_are_as_wide_as_a_conversation_and_strays_are_kept_aside() -> None:
    """Ten conversations of three labels each out of 30: the same answers as the dict,
    frames at labels outside their conversation listed as strays, rows 3 cells wide."""
    rng = random.Random(11)
    layout = {f"c{c}": tuple(f"u{3 * c + k}#0" for k in range(3)) for c in range(10)}
    everyone = [lb for lbs in layout.values() for lb in lbs]
    frames, conversation_of, strays = [], {}, set()
    for n in range(CHUNK_ROWS + 200):
        message_id, conversation = f"m{n}", f"c{n % 10}"
        conversation_of[message_id] = conversation
        for label in layout[conversation]:
            frames.append((message_id, label, _digest(message_id), rng.random() > 0.01, float(n)))
        if n % 997 == 0:  # a frame at someone else's socket
            outsider = next(lb for lb in everyone if lb not in layout[conversation])
            frames.append((message_id, outsider, _digest(message_id), True, float(n) + 0.1))
            strays.add((message_id, outsider))
    compact, expected = Receipts(layout=layout), _reference_fold(frames)
    for frame in frames:
        compact.add(*frame, conversation=conversation_of[frame[0]])
    assert len(compact) == len(expected) and set(compact) == set(expected)
    for key, want in expected.items():
        assert compact[key] == want, key
    assert set(compact.strays()) == strays
    assert compact.conversation_of("m5") == "c5" and compact.conversation_of("nope") is None
    assert compact._chunks[0]["count"].shape[1] == 3  # not 30
