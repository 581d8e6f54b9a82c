"""AT Protocol timestamp identifiers (TIDs), and the one a slot's Bluesky post gets.

A TID (atproto.com/specs/tid) is a 64-bit integer written as 13 characters of
the base32-sortable alphabet: the top bit 0, then 53 bits of microseconds since
the UNIX epoch, then a 10-bit "clock identifier". Bluesky posts are keyed by
TIDs, and a repository holds at most one record per key: a post whose key is
derived from the slot key cannot be created twice, whoever retries.

`for_slot` is that derivation: the slot's own second (the instant in its key),
then 30 bits of a SHA-256 of key and network for the microseconds within that
second and the clock id. A scheduled slot, a /post in the same second
(`manual-…`, `manual-…-2`) and another network's post get different keys; the
same slot and network always get the same one, in any process.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
LENGTH = 13
# The first character carries the zero top bit: only the first half of the alphabet.
_VALID = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
TIMESTAMP_BITS = 53
CLOCK_ID_BITS = 10


def encode(timestamp_us: int, clock_id: int) -> str:
    """The TID of a microsecond timestamp and a clock id (0–1023)."""
    if not 0 <= timestamp_us < 1 << TIMESTAMP_BITS:
        raise ValueError(f"timestamp {timestamp_us} µs does not fit in {TIMESTAMP_BITS} bits")
    if not 0 <= clock_id < 1 << CLOCK_ID_BITS:
        raise ValueError(f"clock id {clock_id} does not fit in {CLOCK_ID_BITS} bits")
    value = timestamp_us << CLOCK_ID_BITS | clock_id
    digits = []
    for _ in range(LENGTH):
        digits.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(digits))


def decode(tid: str) -> tuple[int, int]:
    """(microseconds since the epoch, clock id) of a valid TID; ValueError otherwise."""
    if not is_valid(tid):
        raise ValueError(f"{tid!r} is not a TID")
    value = 0
    for char in tid:
        value = value << 5 | ALPHABET.index(char)
    return value >> CLOCK_ID_BITS, value & (1 << CLOCK_ID_BITS) - 1


def is_valid(tid: str) -> bool:
    return bool(_VALID.match(tid))


def for_slot(key: str, network: str) -> str:
    """The record key of slot `key`'s post on `network`: stable, valid, and within
    the second the key names (ValueError for a key that names no instant)."""
    found = _INSTANT.search(key)
    if found is None:
        raise ValueError(f"slot key {key!r} names no UTC instant")
    second = datetime.strptime(found.group(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    digest = int.from_bytes(hashlib.sha256(f"{key}\n{network}".encode()).digest()[:8], "big")
    micros = (digest >> CLOCK_ID_BITS) % 1_000_000
    clock_id = digest & (1 << CLOCK_ID_BITS) - 1
    return encode(int(second.timestamp()) * 1_000_000 + micros, clock_id)
