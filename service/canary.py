"""Canary routing: a stable share of users goes to the second bundle.

The key is the request's ``user_id`` (so a user sees one version on every request and every replica),
else its request id. sha256 of the key picks one of 10,000 buckets; buckets below ``percent * 100``
go to the canary, so the share is exact to 0.01 points in expectation and the same on every replica.
"""

from __future__ import annotations

import hashlib

BUCKETS = 10_000


def bucket(key: str) -> int:
    """The key's bucket in [0, BUCKETS), the same in every process and Python version."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % BUCKETS


def in_canary(key: str, percent: float) -> bool:
    return percent > 0 and bucket(key) < round(percent * BUCKETS / 100)
