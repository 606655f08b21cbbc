"""Memory of the delivery listener's receipts: compact store vs a dict of objects.

    . .venv/bin/activate && python bench/receipts_memory.py [--messages 100000] [--labels 12]

Folds the same frames (uuid message ids, 3 of ``--labels`` sockets per message, one
sha256 each) into ``suite.receipts.Receipts`` and into the per-pair dict of ``Received``
it replaced, measuring each with tracemalloc. Prints bytes per (message, label) and the
ratio, and what a 30-minute Test 01 at 500 msg/s (2.7 M pairs) would hold. Asserts
nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import tracemalloc
import uuid

from nightly_pipeline.suite.receipts import Receipts, Received

NIGHTLY_SOAK_PAIRS = 500 * 1800 * 3


def frames(messages: int, labels: int):
    names = [f"user{i:04d}#0" for i in range(labels)]
    for n in range(messages):
        message_id = str(uuid.uuid4())
        digest = hashlib.sha256(message_id.encode()).hexdigest()
        for k in range(3):
            yield message_id, names[(n + k) % labels], digest, True, float(n)


def fold_dict(items) -> dict:
    out: dict[tuple[str, str], Received] = {}
    for message_id, label, digest, matches, at in items:
        got = out.setdefault((message_id, label), Received())
        got.count += 1
        if got.count == 1:
            got.first_at = at
        got.digests.add(digest)
        got.corrupted += not matches
    return out


def fold_compact(items, labels: int) -> Receipts:
    store = Receipts(tuple(f"user{i:04d}#0" for i in range(labels)))
    for frame in items:
        store.add(*frame)
    return store


def measure(build) -> float:
    tracemalloc.start()
    try:
        kept = build()
        size = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--labels", type=int, default=12)
    args = parser.parse_args()
    pairs = 3 * args.messages
    items = list(frames(args.messages, args.labels))  # built before measuring
    old = measure(lambda: fold_dict(items)) / pairs
    new = measure(lambda: fold_compact(items, args.labels)) / pairs
    print(
        f"dict of Received: {old:6.0f} B per pair  ({old * NIGHTLY_SOAK_PAIRS / 2**30:.2f} GiB"
        " for a nightly Test 01)"
    )
    print(f"Receipts:         {new:6.0f} B per pair  ({new * NIGHTLY_SOAK_PAIRS / 2**30:.2f} GiB)")
    print(f"ratio: {new / old:.2f}")


if __name__ == "__main__":
    main()
