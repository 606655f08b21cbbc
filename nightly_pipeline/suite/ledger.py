"""The delivery ledger: what was sent and what arrived, holding only what is in flight.

Keeping every sent message and its receipts to the end grew a 30-minute Test 01 (900,000
messages, 2.7 M deliveries) by ~0.8 GB. Here a message is *settled* once every recipient
has it exactly once, intact, and ``settle_after_s`` has passed since it was sent: its
deliveries fold into counters (``expected``; their end-to-end times go to a recorder of
constant size), its receipts row is freed, and its id goes to ``SettledIds`` (spilled
to a temporary SQLite file).

The verdict is the one ``delivery.judge_delivery`` gives on everything kept to the end:

- a settled message contributed no loss, duplicate or corruption, and its e2e times;
- a frame for a settled message arriving later is judged against the settled pair (one
  intact frame with the sent digest) in ``_late``: a duplicate, and corrupted when it does
  not match its own hash or the sent digest; at another conversation's socket (Test 12)
  it is a stray, as before;
- a message that is not clean when old enough (one recipient missing it, duplicated,
  corrupted, strayed) is *kept* with its receipts and judged at the end; kept messages
  are looked at again every ``RECHECK_S`` (a late delivery may complete one). Memory
  grows with those anomalies, not with the run.

Thread-safe: frames come from the listener's pump threads, sends from the load's loop.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from nightly_pipeline.loadgen.recorder import Recorder, SecondSnapshot
from nightly_pipeline.suite.delivery import DeliveryVerdict, Sent, judge_delivery
from nightly_pipeline.suite.receipts import Receipts, Received
from nightly_pipeline.suite.settled import SettledIds

SETTLE_EVERY_S = 1.0  # at most one settling pass a second
RECHECK_S = 10.0  # kept messages looked at again


@dataclass(frozen=True)
class LedgerSize:
    """What the ledger holds (a bench and a test read it)."""

    pending: int  # sent, younger than the settle window
    kept: int  # old but not clean (yet)
    rows: int  # messages in the receipts
    settled: int  # messages folded into counters
    settled_bytes: int


class DeliveryLedger:
    """Sent messages and their receipts, settled as they complete (module docstring)."""

    def __init__(
        self,
        recipients: Mapping[str, tuple[str, ...]],  # conversation -> socket labels
        received: Receipts,
        settle_after_s: float = 10.0,
    ) -> None:
        self.recipients = recipients
        self.received = received
        self.settle_after_s = settle_after_s
        self.e2e = Recorder(0.0)  # settled e2e times, at absolute perf_counter seconds
        self.settled = SettledIds()
        self.settled_pairs = 0
        self._pending: OrderedDict[str, Sent] = OrderedDict()  # in send order (O(1) head)
        self._kept: dict[str, Sent] = {}
        self._late: dict[tuple[str, str], tuple[Received, str]] = {}  # pair -> (so far, sha)
        self._lock = threading.Lock()
        self._next_settle = 0.0
        self._next_recheck = 0.0

    # ------------------------------------------------------------------ input
    def sent(self, message_id: str, sent: Sent) -> None:
        with self._lock:
            self._pending[message_id] = sent

    def frame(
        self,
        message_id: str,
        label: str,
        digest: str,
        matches: bool,
        at: float,
        conversation: str | None = None,
    ) -> None:
        """One frame from the listener (``Receipts.add``'s arguments)."""
        with self._lock:
            settled = None
            if message_id not in self._pending and message_id not in self._kept:
                settled = self.settled.get(message_id)
            if settled is None:
                self.received.add(message_id, label, digest, matches, at, conversation)
            else:
                self._add_late(message_id, label, digest, matches, at, *settled)
            if at >= self._next_settle:
                self._settle(at)

    def _add_late(
        self,
        message_id: str,
        label: str,
        digest: str,
        matches: bool,
        at: float,
        conversation: str,
        sha256: str,
    ) -> None:
        if label not in self.recipients.get(conversation, ()):
            self.received.add_late_stray(message_id, label, digest, matches, at, conversation)
            return
        key = (message_id, label)
        if key not in self._late:  # the settled pair: one intact frame with the sent body
            self._late[key] = (Received(1, 0, 0.0, {sha256}), sha256)
        got = self._late[key][0]
        got.count += 1
        got.corrupted += not matches
        got.digests.add(digest)

    # ------------------------------------------------------------------ settling
    def settle(self, now: float | None = None) -> None:
        """Settle what is due (also done as frames arrive, once a second)."""
        with self._lock:
            self._settle(time.perf_counter() if now is None else now)

    def _settle(self, now: float) -> None:
        self._next_settle = now + SETTLE_EVERY_S
        due = now - self.settle_after_s
        while self._pending:
            message_id = next(iter(self._pending))
            if self._pending[message_id].sent_at > due:
                break
            message_id, sent = self._pending.popitem(last=False)
            if not self._settle_one(message_id, sent, now):
                self._kept[message_id] = sent
        if now >= self._next_recheck:
            self._next_recheck = now + RECHECK_S
            for message_id, sent in list(self._kept.items()):
                if self._settle_one(message_id, sent, now):
                    del self._kept[message_id]

    def _settle_one(self, message_id: str, sent: Sent, now: float) -> bool:
        labels = self.recipients.get(sent.conversation, ())
        arrivals = self.received.clean_first_arrivals(
            message_id, labels, sent.sha256, sent.conversation
        )
        if arrivals is None or not labels:
            return False
        for first_at in arrivals:
            self.e2e.trend("e2e_delivery_ms", (first_at - sent.sent_at) * 1000.0, now)
        self.settled_pairs += len(labels)
        self.settled.add(message_id, sent.conversation, sent.sha256)
        self.received.forget(message_id)
        return True

    # ------------------------------------------------------------------ reading
    def unsettled(self) -> dict[str, Sent]:
        """The messages not settled (pending and kept): what the verdict still reads."""
        with self._lock:
            return {**self._kept, **self._pending}

    def size(self) -> LedgerSize:
        with self._lock:
            return LedgerSize(
                len(self._pending),
                len(self._kept),
                self.received.rows(),
                len(self.settled),
                self.settled.nbytes(),
            )

    def pairs_received(self) -> int:
        """Pairs received so far, settled ones included (cheap: for progress)."""
        with self._lock:
            return len(self.received) + self.settled_pairs

    def delivery_progress(self) -> tuple[int, int]:
        """(pairs delivered, pairs owed) for every message sent so far."""
        with self._lock:
            delivered = owed = self.settled_pairs
            for sent_map in (self._pending, self._kept):
                for message_id, sent in sent_map.items():
                    labels = self.recipients.get(sent.conversation, ())
                    owed += len(labels)
                    delivered += sum(1 for lb in labels if (message_id, lb) in self.received)
            return delivered, owed

    def verdict(self) -> DeliveryVerdict:
        """``judge_delivery``'s verdict on every message sent (module docstring)."""
        with self._lock:
            unsettled = {**self._kept, **self._pending}
            v = judge_delivery(unsettled, self.recipients, self.received)
            duplicated = corrupted = 0
            for got, sha256 in self._late.values():
                duplicated += got.count - 1
                corrupted += max(got.corrupted, 1 if got.digests - {sha256} else 0)
            return DeliveryVerdict(
                v.expected + self.settled_pairs,
                v.lost,
                v.duplicated + duplicated,
                v.corrupted + corrupted,
                v.e2e_ms,
            )

    def e2e_snapshots(self, run_start: float) -> list[SecondSnapshot]:
        """The settled e2e times as snapshots of a recorder started at ``run_start``
        (their seconds shifted; a sample before it counts in second 0)."""
        with self._lock:
            self.e2e.close_all()
            snapshots = self.e2e.snapshots()
        shift = int(self.e2e.run_start - run_start)
        return [
            SecondSnapshot(max(0, s.second + shift), 0.0, s.series) for s in snapshots if s.series
        ]
