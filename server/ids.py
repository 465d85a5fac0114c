"""The one place that builds ids and secrets, all from the OS CSPRNG (`secrets`).

Ids are a prefix plus a time-ordered, random tail, so that sorting by id sorts by creation.
Some ids are capabilities (knowing a session id lets a publishable key continue that
conversation), so every id carries 128 random bits: none can be predicted from others.
"""

from __future__ import annotations

import hashlib
import secrets
import time


def new_id(prefix: str) -> str:
    """`agt_`, `sess_`, `msg_`, `doc_`, `key_`, ... followed by 11 hex digits of milliseconds
    and 32 random hex digits (128 bits)."""
    return f"{prefix}_{int(time.time() * 1000):011x}{secrets.token_hex(16)}"


def new_completion_id() -> str:
    """An OpenAI chat completion id, `chatcmpl-` and 128 random bits."""
    return f"chatcmpl-{secrets.token_hex(16)}"


def new_secret(kind_prefix: str) -> str:
    """A key secret, `sk_…` or `pk_…`, with 192 bits of randomness."""
    return f"{kind_prefix}_{secrets.token_urlsafe(24)}"


def hash_secret(secret: str) -> str:
    """Key secrets are stored as their SHA-256; they are random, so no salt or stretching."""
    return hashlib.sha256(secret.encode()).hexdigest()
