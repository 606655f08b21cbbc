"""Bytes per night and per year of the metric store, per profile, before and after
compaction (DESIGN §12, Issue 15).

    python bench/storage_growth.py                    # a real ci night of Tests 01-07 first
    python bench/storage_growth.py --from-store FILE  # reuse a store that holds a real night

The rows come from a real night: ``nightly run --profile ci --tests 01..07`` against the
embedded platform (or a store given with ``--from-store``; its newest night is used). A
night at another profile is that night's rows stretched to the profile's duration of each
test (``Profile.duration`` of the test's plan): second ``s`` of a test repeats the real
rows of its second ``s mod (the real run's seconds)``, so every (metric, tags) series and
its sparsity are the real ones; every number is jittered by +-2.5 % per row so that DuckDB
compresses a varying run, not a repeated one. Summary metrics, thresholds and journals
are copied per night as they are.

Per profile it writes ``--nights`` and ``--nights // 2`` nights into fresh store files and
measures the files (database + WAL, after a rewrite so that no free block counts): the
difference is the bytes of one more night. Then it compacts both stores with
``keep_nights=1`` (every night but the newest becomes per-minute) and measures again.
A year is 30 per-second nights plus 335 per-minute ones (the default retention), and,
for comparison, 365 per-second nights. Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nightly_pipeline.store import DEFAULT_KEEP_NIGHTS, MetricStore  # noqa: E402
from nightly_pipeline.store.compaction import file_bytes  # noqa: E402
from nightly_pipeline.suite.catalog import BY_ID  # noqa: E402
from nightly_pipeline.suite.profiles import PROFILES  # noqa: E402

TESTS = ("01", "02", "03", "04", "05", "06", "07")
REAL_NIGHT = date(2026, 11, 22)
FIRST = date(2030, 1, 1)
JITTER = 0.05
NIGHT_TABLES = ("test_results", "metrics", "threshold_results", "chaos_experiments",
                "chaos_activities")  # fmt: skip


def run_real_ci_night(home: Path) -> Path:
    """``nightly run --profile ci`` of Tests 01-07 in a child process; its store."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NIGHTLY_HOME": str(home)}
    argv = [sys.executable, "-m", "nightly_pipeline.cli", "run", "--profile", "ci"]
    argv += ["--tests", ",".join(TESTS), "--night", REAL_NIGHT.isoformat()]
    print(f"running a real ci night of Tests {TESTS[0]}-{TESTS[-1]} in {home} ...", flush=True)
    began = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    print(f"  nightly run exited {done.returncode} after {time.monotonic() - began:.0f} s")
    store = home / "metrics.duckdb"
    if not store.exists():
        sys.exit(f"the ci night stored nothing:\n{done.stderr[-2000:]}")
    return store


def real_night(source: Path) -> tuple[date, dict[str, int]]:
    """The newest night of ``source`` and its tests' real run lengths in seconds."""
    with duckdb.connect(str(source), read_only=True) as conn:
        (night,) = conn.execute("SELECT max(night) FROM series").fetchone()  # type: ignore[misc]
        spans = conn.execute(
            "SELECT test, max(second) + 1 FROM series WHERE night = ? GROUP BY test", [night]
        ).fetchall()
    return night, dict(spans)


def _durations(profile: str, spans: dict[str, int]) -> dict[str, int]:
    """Seconds of series per test at ``profile``: the real ci run's, scaled by the ratio
    of the profile's duration of the test to ci's (a ci run's series also holds its
    drain seconds after the 6 s of load)."""
    specs = {test.spec.key: test.spec for test in BY_ID.values()}
    ci = PROFILES["ci"]
    target = PROFILES[profile]  # type: ignore[index]
    return {
        test: round(
            span * target.duration(specs[test].duration_s) / ci.duration(specs[test].duration_s)
        )
        for test, span in spans.items()
    }


def write_nights(
    path: Path, source: Path, night: date, profile: str, spans: dict[str, int], nights: int
) -> None:
    """``nights`` nights of ``profile`` stretched from the real night, in SQL."""
    MetricStore(path)  # the schema, by the store's own migrations
    durations = _durations(profile, spans)
    with duckdb.connect(str(path)) as conn:
        quoted = str(source).replace("'", "''")
        conn.execute(f"ATTACH '{quoted}' AS real (READ_ONLY)")
        conn.execute("CREATE TEMP TABLE plan (test TEXT, seconds INTEGER, span INTEGER)")
        conn.executemany(
            "INSERT INTO plan VALUES (?, ?, ?)",
            [(t, durations[t], spans[t]) for t in spans],
        )
        conn.execute(
            "CREATE TEMP TABLE seconds AS SELECT test, span, unnest(range(seconds)) AS s FROM plan"
        )
        for i in range(nights):
            day = FIRST + timedelta(days=i)
            for table in NIGHT_TABLES:
                conn.execute(
                    f"INSERT INTO {table} SELECT * REPLACE (CAST(? AS DATE) AS night, "
                    f"? AS profile) FROM real.{table} WHERE night = ?",
                    [day, profile, night],
                )
            j = f"(1 + {JITTER} * (random() - 0.5))"
            conn.execute(
                f"""
                INSERT INTO series BY NAME
                SELECT CAST(? AS DATE) AS night, ? AS profile, r.test, r.metric, r.tags,
                       CAST(g.s AS INTEGER) AS second,
                       CAST(round(r.count * {j}) AS BIGINT) AS count,
                       CAST(round(r.errors * {j}) AS BIGINT) AS errors,
                       r.mean * {j} AS mean, r.p50 * {j} AS p50, r.p95 * {j} AS p95,
                       r.p99 * {j} AS p99, r.max * {j} AS max, r.value * {j} AS value
                FROM real.series AS r
                JOIN seconds AS g ON g.test = r.test AND g.s % g.span = r.second
                WHERE r.night = ?
                """,
                [day, profile, night],
            )


def dense_bytes(path: Path) -> int:
    """The file's bytes once rewritten (no free blocks): what its rows take."""
    MetricStore(path).compact(keep_nights=10_000, rewrite_min_free=0.0)
    return file_bytes(path)


def series_rows(path: Path) -> int:
    with duckdb.connect(str(path), read_only=True) as conn:
        return int(conn.execute("SELECT count(*) FROM series").fetchone()[0])  # type: ignore[index]


def measure(source: Path, night: date, spans: dict[str, int], profile: str, nights: int, tmp: Path):
    """(raw bytes/night, compacted bytes/night, rows/night, a compaction's summary)."""
    sizes = {}
    summary = ""
    rows = 0
    for n in (nights // 2, nights):
        path = tmp / f"{profile}-{n}.duckdb"
        write_nights(path, source, night, profile, spans, n)
        raw = dense_bytes(path)
        rows_n = series_rows(path)
        began = time.monotonic()
        result = MetricStore(path).compact(keep_nights=1)
        took = time.monotonic() - began
        sizes[n] = (raw, result.bytes_after)
        rows = rows_n // n
        summary = f"{result.summary()}\n  compaction took {took:.1f} s"
    small, large = nights // 2, nights
    raw_per_night = (sizes[large][0] - sizes[small][0]) / (large - small)
    compact_per_night = (sizes[large][1] - sizes[small][1]) / (large - small)
    return raw_per_night, compact_per_night, rows, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-store", type=Path, help="a store holding a real night")
    parser.add_argument(
        "--nights",
        default="ci=40,smoke=20,nightly=10",
        help="nights written per profile (its half too); small nights need more, since a "
        "file grows by 256 KiB blocks",
    )
    parser.add_argument("--profiles", default="ci,smoke,nightly")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="storage-growth-") as tmp_dir:
        tmp = Path(tmp_dir)
        given = args.from_store or run_real_ci_night(tmp / "ci-home")
        source = tmp / "source.duckdb"  # a copy, brought to this code's schema
        source.write_bytes(given.read_bytes())
        MetricStore(source)
        night, spans = real_night(source)
        with duckdb.connect(str(source), read_only=True) as conn:
            real_rows = conn.execute(
                "SELECT count(*) FROM series WHERE night = ?", [night]
            ).fetchone()[0]  # type: ignore[index]
        print(f"real night {night} from {given}: {real_rows:,} per-second series rows; "
              f"seconds per test {spans}")  # fmt: skip
        keep = DEFAULT_KEEP_NIGHTS
        print(
            f"\n{'profile':8} {'load s':>7} {'rows/night':>11} {'B/row':>6} "
            f"{'MB/night':>9} {'MB/night':>9} {'GB/year':>8} {'GB/year':>9}"
        )
        print(
            f"{'':8} {'':>7} {'':>11} {'':>6} {'raw':>9} {'compact':>9} "
            f"{'no comp.':>8} {f'{keep}+{365 - keep}':>9}"
        )
        summaries = []
        nights_of = dict(pair.split("=") for pair in args.nights.split(","))
        for profile in args.profiles.split(","):
            nights = int(nights_of[profile])
            raw, compact, rows, summary = measure(source, night, spans, profile, nights, tmp)
            load_s = sum(_durations(profile, spans).values())
            year_raw = 365 * raw
            year = keep * raw + (365 - keep) * compact
            print(
                f"{profile:8} {load_s:>7,} {rows:>11,} {raw / max(rows, 1):>6.0f} "
                f"{raw / 1e6:>9.2f} {compact / 1e6:>9.3f} {year_raw / 1e9:>8.2f} "
                f"{year / 1e9:>9.2f}"
            )
            summaries.append(f"[{profile}, {nights} nights, keep_nights=1] {summary}")
        print("\n" + "\n".join(summaries))


if __name__ == "__main__":
    main()
