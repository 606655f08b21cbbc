"""The delivery ledger settles messages as they complete: over a soak it holds what is in
flight (counted in entries, not RSS), and its verdict is the one the unsettled code gives
on the same frames, late duplicates, corruption, losses and leaks included. Frames and
times are generated (a fake clock: ``at`` and ``sent_at`` are simulated seconds); the
generator's RSS over a real Test 01 is printed by bench/generator_memory.py."""

from __future__ import annotations

import hashlib
import random
import tracemalloc
from dataclasses import dataclass, field

from nightly_pipeline.loadgen.recorder import Recorder
from nightly_pipeline.suite.delivery import DeliveryVerdict, Sent, judge_delivery
from nightly_pipeline.suite.leaks import judge_leaks
from nightly_pipeline.suite.ledger import DeliveryLedger
from nightly_pipeline.suite.receipts import Receipts
from nightly_pipeline.suite.settled import MERGE_EVERY, SettledIds

RATE = 500  # messages a simulated second
GRACE_S = 10.0


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Soak:
    """A generated soak: every send and frame in time order, with its anomalies."""

    layout: dict[str, tuple[str, ...]]
    events: list[tuple[float, int, tuple]] = field(default_factory=list)  # (at, order, ...)
    anomalies: int = 0

    def add(self, at: float, *event: object) -> None:
        self.events.append((at, len(self.events), event))


def _soak(messages: int, seed: int = 3) -> Soak:
    rng = random.Random(seed)
    layout = {f"c{c}": tuple(f"u{3 * c + k}#0" for k in range(3)) for c in range(10)}
    soak = Soak(layout)
    for n in range(messages):
        message_id, conversation = f"m{n}", f"c{n % 10}"
        sha, sent_at = _digest(message_id), n / RATE
        # the 202 is read after the frames for some messages (a fast delivery)
        soak.add(sent_at + (0.2 if n % 97 == 0 else 0.0), "sent", message_id, conversation, sha)
        for label in layout[conversation]:
            at = sent_at + rng.uniform(0.005, 0.08)
            kind = rng.random()
            if kind < 0.002:  # lost at this socket
                soak.anomalies += 1
                continue
            if kind < 0.004:  # corrupted on the way
                soak.add(at, "frame", message_id, label, sha, False, conversation)
                soak.anomalies += 1
                continue
            if kind < 0.005:  # another body, with its own hash
                soak.add(
                    at, "frame", message_id, label, _digest("x" + message_id), True, conversation
                )
                soak.anomalies += 1
                continue
            if kind < 0.006:  # delivered late, after the settle window (a slow reclaim)
                soak.add(at + 2 * GRACE_S, "frame", message_id, label, sha, True, conversation)
                soak.anomalies += 1
                continue
            soak.add(at, "frame", message_id, label, sha, True, conversation)
            if kind < 0.008:  # a duplicate within the window
                soak.add(at + 1.0, "frame", message_id, label, sha, True, conversation)
                soak.anomalies += 1
            elif kind < 0.010:  # a duplicate long after settling (an outbox replay)
                late = at + 3 * GRACE_S
                soak.add(late, "frame", message_id, label, sha, True, conversation)
                if kind < 0.009:  # ... twice, the second one corrupted
                    soak.add(late + 0.5, "frame", message_id, label, sha, False, conversation)
            elif kind < 0.011:  # a late frame with another body
                other = _digest("late" + message_id)
                soak.add(at + 3 * GRACE_S, "frame", message_id, label, other, True, conversation)
        if n % 1009 == 0:  # at another conversation's socket, in the window and long after
            outsider = layout[f"c{(n + 1) % 10}"][0]
            soak.add(sent_at + 0.05, "frame", message_id, outsider, sha, True, conversation)
            soak.anomalies += 1
        if n % 1013 == 0:
            outsider = layout[f"c{(n + 2) % 10}"][1]
            soak.add(sent_at + 3 * GRACE_S, "frame", message_id, outsider, sha, True, conversation)
    soak.add(messages / RATE + 0.5, "frame", "never-sent", "u0#0", _digest("?"), True, "c0")
    soak.events.sort()
    return soak


def _run(soak: Soak) -> tuple[DeliveryLedger, dict[str, Sent], Receipts, list[int]]:
    """Feed the soak to a ledger and, unsettled, to a plain sent dict and receipts;
    the ledger's messages held (sent entries or receipt rows, whichever is more)
    sampled every simulated second."""
    ledger = DeliveryLedger(soak.layout, Receipts(layout=soak.layout), GRACE_S)
    sent: dict[str, Sent] = {}
    full = Receipts(layout=soak.layout)
    held, next_sample = [], 1.0
    for at, _, event in soak.events:
        if event[0] == "sent":
            _, message_id, conversation, sha = event
            sent[message_id] = Sent(conversation, sha, int(message_id[1:]) / RATE)
            ledger.sent(message_id, sent[message_id])
        else:
            _, message_id, label, digest, matches, conversation = event
            full.add(message_id, label, digest, matches, at, conversation)
            ledger.frame(message_id, label, digest, matches, at, conversation)
        if at >= next_sample:
            next_sample += 1.0
            size = ledger.size()
            held.append(max(size.pending + size.kept, size.rows))
    return ledger, sent, full, held


def _e2e_stats(verdict: DeliveryVerdict, ledger: DeliveryLedger | None) -> dict[str, float]:
    rec = Recorder(0.0)
    if ledger is not None:
        rec.ingest(ledger.e2e_snapshots(0.0))
    for ms in verdict.e2e_ms:
        rec.trend("e2e_delivery_ms", ms, 1.0)
    rec.close_all()
    stats = rec.stats("e2e_delivery_ms")
    return {k: stats[k] for k in ("count", "min", "max", "avg", "p(95)")}


def test_a_soak_holds_what_is_in_flight_and_gives_the_unsettled_verdict() -> None:
    """60 simulated seconds at 500 msg/s to 3 sockets each (30,000 messages), with
    losses, corruption, duplicates in and after the window, late deliveries and leaks:
    the ledger holds about ``RATE * GRACE_S`` messages from the window on (not 30,000),
    and its verdict, e2e times and leaks are the unsettled code's."""
    soak = _soak(60 * RATE)
    ledger, sent, full, held = _run(soak)
    ledger.settle(soak.events[-1][0] + GRACE_S + 2)  # the drain's end
    want = judge_delivery(sent, soak.layout, full)
    got = ledger.verdict()
    assert (got.expected, got.lost, got.duplicated, got.corrupted) == (
        want.expected,
        want.lost,
        want.duplicated,
        want.corrupted,
    )
    assert want.lost > 0 and want.duplicated > 0 and want.corrupted > 0  # the soak's anomalies
    assert _e2e_stats(got, ledger) == _e2e_stats(want, None)

    bound = RATE * (GRACE_S + 2) + soak.anomalies
    assert max(held) <= bound < len(sent) / 2, (max(held), bound)
    assert held[20] > 0 and max(held[20:]) <= 1.2 * held[20] + soak.anomalies  # flat
    size = ledger.size()
    assert size.settled > 0.95 * len(sent)
    assert size.settled_bytes > 0  # on disk, not in memory

    members = {c: frozenset(lb.split("#")[0] for lb in lbs) for c, lbs in soak.layout.items()}
    user_of = {lb: lb.split("#")[0] for lbs in soak.layout.values() for lb in lbs}
    leaks_before = judge_leaks(full, sent, members, user_of, soak.layout)
    leaks_after = judge_leaks(ledger.received, ledger.unsettled(), members, user_of, soak.layout)
    assert sorted(leaks_after, key=repr) == sorted(leaks_before, key=repr)
    assert len(leaks_before) > 0


def test_a_late_duplicate_of_a_settled_message_is_counted_and_a_lost_one_stays_lost() -> None:
    layout = {"c1": ("a#0", "b#0")}
    ledger = DeliveryLedger(layout, Receipts(layout=layout), settle_after_s=5.0)
    sha = _digest("m1")
    ledger.sent("m1", Sent("c1", sha, 0.0))
    ledger.sent("m2", Sent("c1", _digest("m2"), 0.0))
    for label in ("a#0", "b#0"):
        ledger.frame("m1", label, sha, True, 0.01, "c1")
    ledger.frame("m2", "a#0", _digest("m2"), True, 0.01, "c1")  # b#0 never gets m2
    ledger.settle(6.0)
    size = ledger.size()
    assert (size.settled, size.kept, size.rows) == (1, 1, 1)  # m2 kept: not complete
    ledger.frame("m1", "a#0", sha, True, 30.0, "c1")  # a late duplicate
    ledger.frame("m1", "b#0", sha, False, 31.0, "c1")  # a late corrupted duplicate
    verdict = ledger.verdict()
    assert (verdict.expected, verdict.lost, verdict.duplicated, verdict.corrupted) == (4, 1, 2, 1)


def test_settled_ids_answer_after_merging_and_miss_what_was_not_settled() -> None:
    settled = SettledIds()
    for n in range(MERGE_EVERY + 10):
        settled.add(f"id{n}", f"c{n % 3}", _digest(str(n)))
    assert len(settled) == MERGE_EVERY + 10 and settled.nbytes() > 52 * MERGE_EVERY
    assert settled.get("id5") == ("c2", _digest("5"))  # spilled to the table
    late = MERGE_EVERY + 3  # still in the recent dict
    assert settled.get(f"id{late}") == (f"c{late % 3}", _digest(str(late)))
    assert settled.get("id-never") is None


def test_settled_ids_hold_a_bounded_batch_in_memory_and_spill_the_rest() -> None:
    """Five batches of ids: Python holds at most one batch (tracemalloc, after a first
    spill) while the table on disk grows with every batch; each id still answers."""
    settled = SettledIds()
    for n in range(MERGE_EVERY):
        settled.add(f"id{n}", "c0", _digest(str(n)))
    tracemalloc.start()
    held, on_disk = [], []
    for batch in range(1, 5):
        for n in range(batch * MERGE_EVERY, (batch + 1) * MERGE_EVERY):
            settled.add(f"id{n}", f"c{n % 3}", _digest(str(n)))
        held.append(tracemalloc.get_traced_memory()[0])
        on_disk.append(settled.nbytes())
    tracemalloc.stop()
    assert max(held) - min(held) < 0.1 * (on_disk[-1] - on_disk[0]), (held, on_disk)
    assert on_disk == sorted(on_disk) and on_disk[-1] > on_disk[0]
    assert len(settled) == 5 * MERGE_EVERY
    for n in (0, MERGE_EVERY + 1, 5 * MERGE_EVERY - 1):
        conversation = "c0" if n < MERGE_EVERY else f"c{n % 3}"
        assert settled.get(f"id{n}") == (conversation, _digest(str(n)))
    assert settled.get("id-never") is None
    settled.close()
