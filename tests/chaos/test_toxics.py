"""Each toxic's behaviour on real loopback sockets, through an in-process proxy.

Timing: only lower bounds for deliberate delays; "nothing arrives" is checked over a short
window, and every wait for data that should come has a generous hang guard (GUARD_S).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time

import pytest

from nightly_pipeline.chaos import FaultSlot, build_fault
from nightly_pipeline.chaos.faults.slicer import Slicer
from tests.chaos.helpers import (
    GUARD_S,
    Sink,
    connect,
    echo,
    nothing_for,
    proxied,
    read_all,
    sender,
    toxic,
)


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


async def _rtt(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> float:
    t0 = time.perf_counter()
    writer.write(data)
    assert await asyncio.wait_for(reader.readexactly(len(data)), GUARD_S) == data
    return time.perf_counter() - t0


# ---------------------------------------------------------------- latency


def test_latency_delays_each_stream_it_is_on() -> None:
    async def body() -> None:
        async with proxied() as proxy:
            reader, writer = await connect(proxy.port)
            proxy.add_fault(toxic("latency", "downstream", latency=200))
            assert await _rtt(reader, writer, b"a") >= 0.19
            proxy.add_fault(toxic("latency", "upstream", latency=150, jitter=50))
            assert await _rtt(reader, writer, b"b") >= 0.2 + 0.1 - 0.01
            writer.close()

    run(body())


def test_latency_removed_while_live_delivers_what_it_delays() -> None:
    async def body() -> None:
        async with proxied() as proxy:
            reader, writer = await connect(proxy.port)
            proxy.add_fault(toxic("latency", latency=60_000))
            writer.write(b"held")
            assert await nothing_for(reader, 0.2)
            assert proxy.remove_fault("latency_downstream")
            assert await asyncio.wait_for(reader.readexactly(4), GUARD_S) == b"held"
            writer.close()

    run(body())


# ---------------------------------------------------------------- bandwidth


def test_bandwidth_takes_at_least_size_over_rate_and_trickles() -> None:
    payload = random.randbytes(60_000)

    async def body() -> None:
        async with proxied(sender(payload)) as proxy:
            proxy.add_fault(toxic("bandwidth", rate=100))  # 100 KB/s: 0.6 s for 60 KB
            t0 = time.perf_counter()
            reader, writer = await connect(proxy.port)
            reads = []
            while data := await asyncio.wait_for(reader.read(65536), GUARD_S):
                reads.append(data)
            elapsed = time.perf_counter() - t0
            assert b"".join(reads) == payload
            assert elapsed >= 0.5
            assert len(reads) >= 3  # 10 KB slices every 100 ms, not one burst
            writer.close()

    run(body())


# ---------------------------------------------------------------- slow_close


def test_slow_close_delays_the_close_not_the_data() -> None:
    async def body() -> None:
        async with proxied(sender(b"bye")) as proxy:
            proxy.add_fault(toxic("slow_close", delay=300))
            t0 = time.perf_counter()
            reader, writer = await connect(proxy.port)
            assert await asyncio.wait_for(reader.readexactly(3), GUARD_S) == b"bye"
            assert await read_all(reader) == b""
            assert time.perf_counter() - t0 >= 0.29
            writer.close()

    run(body())


# ---------------------------------------------------------------- timeout


def test_timeout_zero_holds_data_in_order_until_removed() -> None:
    async def body() -> None:
        async with proxied() as proxy:
            reader, writer = await connect(proxy.port)
            assert await _rtt(reader, writer, b"before") >= 0
            proxy.add_fault(toxic("timeout", timeout=0))  # added to a live link
            for part in (b"one ", b"two ", b"three"):
                writer.write(part)
                await writer.drain()
            assert await nothing_for(reader, 0.3)
            assert proxy.status()["links_open"] == 1  # held, not closed
            assert proxy.remove_fault("timeout_downstream")
            got = await asyncio.wait_for(reader.readexactly(13), GUARD_S)
            assert got == b"one two three"
            assert await _rtt(reader, writer, b"after") >= 0
            writer.close()

    run(body())


def test_timeout_closes_the_link_after_its_timeout() -> None:
    async def body() -> None:
        async with proxied() as proxy:
            proxy.add_fault(toxic("timeout", timeout=300))
            t0 = time.perf_counter()
            reader, writer = await connect(proxy.port)
            writer.write(b"lost")
            assert await read_all(reader) == b""  # closed, nothing delivered
            assert time.perf_counter() - t0 >= 0.29
            writer.close()

    run(body())


def test_timeout_restarts_while_data_keeps_arriving() -> None:
    """Toxiproxy's timer restarts on every chunk: a chatty link outlives ``timeout``."""

    async def body() -> None:
        async with proxied() as proxy:
            proxy.add_fault(toxic("timeout", "upstream", timeout=400))
            reader, writer = await connect(proxy.port)
            t0 = time.perf_counter()
            for _ in range(8):  # 0.8 s of chatter, every 0.1 s
                writer.write(b".")
                await writer.drain()
                await asyncio.sleep(0.1)
            # 0.1 s since the last byte: still well inside the 0.4 s window
            assert proxy.status()["links_open"] == 1
            assert await read_all(reader) == b""  # then closed once quiet
            assert time.perf_counter() - t0 >= 0.7 + 0.39  # last byte at 0.7 s
            writer.close()

    run(body())


# ---------------------------------------------------------------- reset_peer


def test_reset_peer_resets_the_connection() -> None:
    async def body() -> None:
        async with proxied() as proxy:
            proxy.add_fault(toxic("reset_peer", timeout=200))
            reader, writer = await connect(proxy.port)
            t0 = time.perf_counter()
            writer.write(b"x")
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(10), GUARD_S)
            assert time.perf_counter() - t0 >= 0.19
            writer.close()

    run(body())


def test_reset_peer_upstream_resets_the_server_too() -> None:
    sink = Sink()

    async def body() -> None:
        async with proxied(sink) as proxy:
            proxy.add_fault(toxic("reset_peer", "upstream", timeout=0))
            reader, writer = await connect(proxy.port)
            writer.write(b"never delivered")
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(reader.read(10), GUARD_S)
            for _ in range(int(GUARD_S / 0.01)):
                if sink.ended:
                    break
                await asyncio.sleep(0.01)
            assert sink.ended == ["reset"] and sink.received == [bytearray()]
            writer.close()

    run(body())


def test_reset_peer_removed_before_it_fires_delivers() -> None:
    async def body() -> None:
        async with proxied() as proxy:
            proxy.add_fault(toxic("reset_peer", timeout=60_000))
            reader, writer = await connect(proxy.port)
            writer.write(b"kept")
            assert await nothing_for(reader, 0.2)
            proxy.remove_fault("reset_peer_downstream")
            assert await asyncio.wait_for(reader.readexactly(4), GUARD_S) == b"kept"
            writer.close()

    run(body())


# ---------------------------------------------------------------- slicer


def test_slicer_splits_reads_with_delays_between_slices() -> None:
    payload = bytes(range(100))
    slicer = Slicer(average_size=25, size_variation=0, delay=50_000)  # 4 slices, 50 ms apart
    assert [e - s for s, e in slicer.slices(len(payload))] == [25, 25, 25, 25]

    async def body() -> None:
        async with proxied(sender(payload)) as proxy:
            proxy.add_fault(toxic("slicer", average_size=25, size_variation=0, delay=50_000))
            reader, writer = await connect(proxy.port)
            t0 = time.perf_counter()
            reads = []
            while data := await asyncio.wait_for(reader.read(65536), GUARD_S):
                reads.append(data)
            assert b"".join(reads) == payload
            assert len(reads) >= 2
            assert min(len(r) for r in reads) <= 25
            assert time.perf_counter() - t0 >= 3 * 0.05 - 0.01
            writer.close()

    run(body())


def test_slicer_pieces_cover_the_chunk_within_bounds() -> None:
    slicer = Slicer(average_size=100, size_variation=30)
    rng = random.Random(3)
    for size in (1, 99, 130, 131, 10_000, 65_536):
        pieces = slicer.slices(size, rng)
        assert pieces[0][0] == 0 and pieces[-1][1] == size
        assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))
        assert all(1 <= e - s <= 130 for s, e in pieces)


def test_slicer_removed_mid_chunk_sends_the_rest() -> None:
    payload = bytes(range(100))

    async def body() -> None:
        async with proxied(sender(payload)) as proxy:
            proxy.add_fault(toxic("slicer", average_size=10, delay=60_000_000))  # 60 s
            reader, writer = await connect(proxy.port)
            first = await asyncio.wait_for(reader.read(65536), GUARD_S)
            assert 0 < len(first) <= 10
            proxy.remove_fault("slicer_downstream")
            assert first + await read_all(reader) == payload
            writer.close()

    run(body())


# ---------------------------------------------------------------- limit_data


def test_limit_data_closes_after_n_bytes() -> None:
    async def body() -> None:
        async with proxied() as proxy:
            proxy.add_fault(toxic("limit_data", bytes=10))
            for _ in range(2):  # the count is per link
                reader, writer = await connect(proxy.port)
                writer.write(b"0123456789abcdefghij")
                assert await read_all(reader) == b"0123456789"
                writer.close()

    run(body())


def test_limit_data_upstream_limits_what_the_server_gets() -> None:
    sink = Sink()

    async def body() -> None:
        async with proxied(sink) as proxy:
            proxy.add_fault(toxic("limit_data", "upstream", bytes=5))
            reader, writer = await connect(proxy.port)
            writer.write(b"abc")
            await writer.drain()
            writer.write(b"defgh")
            assert await read_all(reader) == b""
            for _ in range(int(GUARD_S / 0.01)):
                if sink.ended:
                    break
                await asyncio.sleep(0.01)
            assert sink.received == [bytearray(b"abcde")] and sink.ended == ["eof"]
            writer.close()

    run(body())


# ---------------------------------------------------------------- toxicity, streams, chains


def test_toxicity_zero_leaves_links_untouched() -> None:
    async def body() -> None:
        async with proxied() as proxy:
            proxy.add_fault(toxic("timeout", toxicity=0.0, timeout=0))
            proxy.add_fault(toxic("limit_data", "upstream", toxicity=0.0, bytes=0))
            reader, writer = await connect(proxy.port)
            assert await _rtt(reader, writer, b"untouched") >= 0
            assert len(proxy.faults()) == 2
            writer.close()

    run(body())


def test_toxicity_is_drawn_per_link() -> None:
    async def body() -> None:
        async with proxied() as proxy:
            slot = FaultSlot(
                "cut", build_fault("limit_data", {"bytes": 0}), toxicity=0.5, _rng=random.Random(1)
            )
            proxy.add_fault(slot)
            outcomes = []
            for _ in range(20):
                reader, writer = await connect(proxy.port)
                writer.write(b"x")
                outcomes.append(await asyncio.wait_for(reader.read(1), GUARD_S))
                writer.close()
            assert outcomes.count(b"x") >= 1 and outcomes.count(b"") >= 1

    run(body())


@pytest.mark.parametrize("stream", ["upstream", "downstream"])
def test_a_toxic_acts_on_its_stream_only(stream: str) -> None:
    sink = Sink()

    async def greet_and_record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        await writer.drain()
        await sink(reader, writer)

    async def body() -> None:
        async with proxied(greet_and_record) as proxy:
            proxy.add_fault(toxic("timeout", stream, timeout=0))
            reader, writer = await connect(proxy.port)
            writer.write(b"request")
            await writer.drain()
            await asyncio.sleep(0.3)
            if stream == "upstream":  # the server's greeting passes, the request is held
                assert await asyncio.wait_for(reader.readexactly(5), GUARD_S) == b"hello"
                assert sink.received == [bytearray()]
            else:  # the request passes, the greeting is held
                for _ in range(int(GUARD_S / 0.01)):
                    if sink.received and sink.received[0]:
                        break
                    await asyncio.sleep(0.01)
                assert sink.received == [bytearray(b"request")]
                assert await nothing_for(reader, 0.1)
            proxy.remove_fault(f"timeout_{stream}")
            writer.close()

    run(body())


def test_a_chain_of_toxics_keeps_every_byte_in_order() -> None:
    payload = random.randbytes(1 << 20)

    async def body() -> None:
        async with proxied() as proxy:
            for slot in (
                toxic("latency", latency=5, jitter=5),
                toxic("slicer", average_size=8192, size_variation=1000),
                toxic("bandwidth", rate=100_000),
                toxic("noop", "upstream"),
                toxic("latency", "upstream", latency=1),
                toxic("slow_close", delay=10),
            ):
                proxy.add_fault(slot)
            reader, writer = await connect(proxy.port)

            async def send() -> None:
                writer.write(payload)
                await writer.drain()
                writer.write_eof()

            sending = asyncio.create_task(send())
            assert await read_all(reader) == payload
            await sending
            writer.close()

    run(body())


def test_update_changes_attributes_live_and_keeps_state() -> None:
    async def body() -> None:
        async with proxied() as proxy:
            proxy.add_fault(toxic("limit_data", bytes=4))
            reader, writer = await connect(proxy.port)
            assert await _rtt(reader, writer, b"abc") >= 0  # 3 of 4 bytes used
            assert proxy.update_fault(toxic("limit_data", bytes=6))
            writer.write(b"defgh")
            assert await read_all(reader) == b"def"  # 3 more: 6 in all
            writer.close()

    run(body())


def test_cut_keeps_toxics_and_restore_applies_them() -> None:
    async def body() -> None:
        async with proxied() as proxy:
            proxy.add_fault(toxic("limit_data", bytes=2))
            await proxy.cut()
            with pytest.raises(ConnectionRefusedError):
                await connect(proxy.port)
            await proxy.restore()
            reader, writer = await connect(proxy.port)
            writer.write(b"abcd")
            assert await read_all(reader) == b"ab"
            writer.close()

    run(body())


def test_no_toxic_echo() -> None:
    async def body() -> None:
        async with proxied(echo) as proxy:
            reader, writer = await connect(proxy.port)
            assert await _rtt(reader, writer, b"plain") >= 0
            writer.close()

    run(body())


def test_timeout_updated_keeps_holding_until_it_spares_the_link() -> None:
    async def body() -> None:
        async with proxied() as proxy:
            proxy.add_fault(toxic("timeout", timeout=0))
            reader, writer = await connect(proxy.port)
            writer.write(b"held")
            assert await nothing_for(reader, 0.2)
            assert proxy.update_fault(toxic("timeout", timeout=60_000))  # still a timeout
            assert await nothing_for(reader, 0.2)
            assert proxy.update_fault(toxic("timeout", toxicity=0.0, timeout=60_000))
            assert await asyncio.wait_for(reader.readexactly(4), GUARD_S) == b"held"
            assert [s.toxicity for s in proxy.faults()] == [0.0]
            writer.close()

    run(body())
