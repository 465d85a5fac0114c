"""The one place that builds ids and secrets.

Ids are a prefix plus a time-ordered, random tail, so that sorting by id sorts by creation.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import time


def new_id(prefix: str) -> str:
    """`agt_`, `sess_`, `msg_`, `doc_`, `key_`, ... followed by 11 hex digits of milliseconds
    and 10 random hex digits. Ids name things, they grant nothing: a fast generator will do."""
    return f"{prefix}_{int(time.time() * 1000):011x}{random.getrandbits(40):010x}"


def new_completion_id() -> str:
    return f"chatcmpl-{random.getrandbits(96):024x}"


def new_secret(kind_prefix: str) -> str:
    """A key secret, `sk_…` or `pk_…`, with 192 bits of randomness."""
    return f"{kind_prefix}_{secrets.token_urlsafe(24)}"


def hash_secret(secret: str) -> str:
    """Key secrets are stored as their SHA-256; they are random, so no salt or stretching."""
    return hashlib.sha256(secret.encode()).hexdigest()
