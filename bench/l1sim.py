"""The L1 hit rate of a replayed day over several replicas: random vs consistent routing.

Simulated, not served: each worker's L1 is an LRU bounded in bytes (``MEDIA_L1_BYTES``)
whose entries live ``MEDIA_L1_TTL`` seconds of the day's own clock, as
``mediacache.tiers.lru.BytesLRU`` keeps them (filled by every lookup that reached past
L1, and by the upload's warm-up in the worker that took the upload). The request
stream is the ``make replay`` day itself. Routing: ``random`` (round-robin or
least-connections look random to a hash) or ``consistent`` (a ring of 160 points per
replica over CRC32, the way nginx's ``hash $key consistent`` does, keyed on the media
hash); inside a replica the kernel hands each connection to any of its workers, so a
worker is drawn at random there in both cases.
"""

from __future__ import annotations

import bisect
import random
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class Note(Protocol):
    media_hash: str
    size: int


class DayEvent(Protocol):
    at: float
    kind: str
    index: int


class SimulatedL1:
    """An LRU bounded in bytes whose entries expire ``ttl`` seconds after they were put."""

    def __init__(self, max_bytes: int, ttl: float) -> None:
        self.max_bytes, self.ttl = max_bytes, ttl
        self.entries: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self.used = 0

    def get(self, key: str, now: float) -> bool:
        found = self.entries.get(key)
        if found is None:
            return False
        if now - found[1] > self.ttl:
            self._drop(key)
            return False
        self.entries.move_to_end(key)
        return True

    def put(self, key: str, size: int, now: float) -> None:
        if size > self.max_bytes:
            return
        if key in self.entries:
            self._drop(key)
        self.entries[key] = (size, now)
        self.used += size
        while self.used > self.max_bytes:
            self._drop(next(iter(self.entries)))

    def _drop(self, key: str) -> None:
        size, _ = self.entries.pop(key)
        self.used -= size


class Ring:
    """Consistent hashing over ``replicas``: 160 points each on a CRC32 circle."""

    def __init__(self, replicas: int, points: int = 160) -> None:
        marks = sorted(
            (zlib.crc32(f"replica{r}-{p}".encode()), r)
            for r in range(replicas)
            for p in range(points)
        )
        self.hashes = [h for h, _ in marks]
        self.owners = [r for _, r in marks]

    def replica(self, key: str) -> int:
        i = bisect.bisect(self.hashes, zlib.crc32(key.encode())) % len(self.hashes)
        return self.owners[i]


@dataclass
class L1Result:
    routing: str
    replicas: int
    workers: int
    fetches: int
    hits: int
    share: list[int]  # fetches per replica

    @property
    def hit_rate(self) -> float:
        return self.hits / self.fetches if self.fetches else 0.0


def simulate(
    notes: Sequence[Note],
    day: Sequence[DayEvent],
    *,
    routing: str,
    replicas: int = 2,
    workers: int = 1,
    l1_bytes: int = 64 * 2**20,
    l1_ttl: float = 60.0,
    warm: bool = True,
    seed: int = 7000,
) -> L1Result:
    rng = random.Random(seed)
    caches = [[SimulatedL1(l1_bytes, l1_ttl) for _ in range(workers)] for _ in range(replicas)]
    ring = Ring(replicas)
    fetches = hits = 0
    share = [0] * replicas
    for event in day:
        note = notes[event.index]
        if event.kind == "upload":
            if warm:  # the API is not hash-routed: any replica takes the upload
                rng.choice(rng.choice(caches)).put(note.media_hash, note.size, event.at)
            continue
        if routing == "consistent":
            replica = ring.replica(f"/media/{note.media_hash}")
        else:
            replica = rng.randrange(replicas)
        share[replica] += 1
        l1 = rng.choice(caches[replica])
        fetches += 1
        if l1.get(note.media_hash, event.at):
            hits += 1
        else:
            l1.put(note.media_hash, note.size, event.at)
    return L1Result(routing, replicas, workers, fetches, hits, share)


def l1_table(results: Sequence[L1Result], l1_bytes: int, l1_ttl: float) -> list[str]:
    lines = [
        f"L1 ACROSS REPLICAS  the same day, simulated: one L1 per worker "
        f"({l1_bytes / 2**20:.0f} MiB, TTL {l1_ttl:g} s of the day's clock)",
        f"{'routing':<11} {'replicas':>8} {'workers':>8} {'L1 hit rate':>12} "
        f"{'fetches':>8} {'per replica':>16}",
    ]
    lines.append("-" * len(lines[1]))
    for r in results:
        per = " / ".join(f"{n:,}" for n in r.share)
        lines.append(
            f"{r.routing:<11} {r.replicas:>8} {r.workers:>8} {r.hit_rate:>12.2%} "
            f"{r.fetches:>8,} {per:>16}"
        )
    return lines
