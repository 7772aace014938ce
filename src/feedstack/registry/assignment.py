"""Stable assignment of users to arms (canary, experiments): a hash, never ``random()``.

A user's arm depends only on (salt, user id), so the same user sees the same arm on every request,
replica and restart; a new salt reshuffles everyone (a new experiment). The hash position is
uniform in [0, 1); arms take consecutive slices in the order given, so raising a canary's share
from 10 % to 25 % keeps everyone who was already in it (they stay below the boundary).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from feedstack.core.errors import InputError


def bucket(user_id: str, salt: str) -> float:
    """The user's position in [0, 1) under ``salt`` (BLAKE2b, 64 bits)."""
    digest = hashlib.blake2b(f"{salt}\x00{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def arm_of(user_id: str, salt: str, shares: Mapping[str, float]) -> str:
    """The arm whose slice holds the user's bucket. ``shares`` (arm -> share, in order) must sum
    to 1 (within 1e-9)."""
    total = sum(shares.values())
    if not shares or abs(total - 1.0) > 1e-9 or any(s < 0 for s in shares.values()):
        raise InputError(f"shares: must be non-negative and sum to 1, got {dict(shares)}")
    b = bucket(user_id, salt)
    edge = 0.0
    last = ""
    for arm, share in shares.items():
        edge += share
        last = arm
        if b < edge:
            return arm
    return last


def in_canary(user_id: str, salt: str, share: float) -> bool:
    """True for the users in the canary's share (0..1); monotone in ``share``."""
    if not 0.0 <= share <= 1.0:
        raise InputError(f"canary share: must be in [0, 1], got {share}")
    return bucket(user_id, salt) < share
