"""Per-key chat rate limits: requests and tokens per sliding minute, with GCRA.

Each limit keeps one "theoretical arrival time" (TAT) per key: every request (or token) pushes
it forward by `60 s / limit`, and a request is refused while the TAT is more than a minute
ahead. Counters live in process memory by default and in Redis (`--redis-url`) when replicas
must share them: one Lua script per check, so a check is one round trip. If Redis cannot be
reached, limits fail open (the server keeps serving and says so in its log and on `/readyz`);
authentication and balances never do."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from server.errors import RateLimited

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0
_REDIS_KEY_SECONDS = 120
# Log an unreachable Redis at most this often.
_WARN_EVERY_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Rate:
    """A key's limits; 0 means no limit on that count."""

    requests_per_minute: int = 0
    tokens_per_minute: int = 0

    @property
    def limited(self) -> bool:
        """Whether either count is limited."""
        return bool(self.requests_per_minute or self.tokens_per_minute)


@dataclass(frozen=True, slots=True)
class LimitState:
    """What a limited key has left, for OpenAI's `x-ratelimit-*` response headers."""

    rate: Rate
    remaining_requests: int
    reset_requests_seconds: float
    remaining_tokens: int
    reset_tokens_seconds: float

    def headers(self) -> list[tuple[str, str]]:
        """OpenAI's `x-ratelimit-*` headers for the counts the key is limited on."""
        headers = []
        if self.rate.requests_per_minute:
            headers += [
                ("x-ratelimit-limit-requests", str(self.rate.requests_per_minute)),
                ("x-ratelimit-remaining-requests", str(self.remaining_requests)),
                ("x-ratelimit-reset-requests", _duration(self.reset_requests_seconds)),
            ]
        if self.rate.tokens_per_minute:
            headers += [
                ("x-ratelimit-limit-tokens", str(self.rate.tokens_per_minute)),
                ("x-ratelimit-remaining-tokens", str(self.remaining_tokens)),
                ("x-ratelimit-reset-tokens", _duration(self.reset_tokens_seconds)),
            ]
        return headers


def _duration(seconds: float) -> str:
    """OpenAI's reset format, e.g. `1s`, `6m0s`, `250ms`."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


class RateLimiter(Protocol):
    """Per-key counters of requests and tokens, in memory or in Redis."""

    async def admit(self, key_id: str, rate: Rate) -> LimitState:
        """Counts one request, or raises `RateLimited` with the delay before a retry can
        pass; a request is refused too while the key has no tokens left."""
        ...

    async def spend(self, key_id: str, rate: Rate, tokens: int) -> None:
        """Counts the tokens of a finished turn."""
        ...

    @property
    def healthy(self) -> bool:
        """Whether the counters can be reached; limits fail open while not."""
        ...


def _gcra(tat: float, now: float, limit: int, cost: float) -> tuple[float, float]:
    """The TAT after `cost` units, and how long until the window would admit them (0 if now)."""
    interval = WINDOW_SECONDS / limit
    new_tat = max(tat, now) + interval * cost
    wait = new_tat - now - WINDOW_SECONDS
    return new_tat, max(0.0, wait)


def _remaining(tat: float, now: float, limit: int) -> int:
    interval = WINDOW_SECONDS / limit
    return max(0, math.floor((WINDOW_SECONDS - max(0.0, tat - now)) / interval))


def _refused(wait: float, what: str) -> RateLimited:
    return RateLimited(
        f"this key's rate limit of {what} per minute is used up; retry in {math.ceil(wait)} s",
        reason="RATE_LIMIT_EXCEEDED",
        retry_after_seconds=max(wait, 0.001),
    )


class MemoryRateLimiter:
    """Counters in this process: right for one `serve` worker."""

    def __init__(self) -> None:
        self._tats: dict[tuple[str, str], float] = {}

    @property
    def healthy(self) -> bool:
        """Always: the counters are in this process."""
        return True

    async def admit(self, key_id: str, rate: Rate) -> LimitState:
        """Counts one request against the key's limits, or raises `RateLimited`."""
        now = time.monotonic()
        request_tat = self._tats.get((key_id, "requests"), now)
        token_tat = self._tats.get((key_id, "tokens"), now)
        if rate.tokens_per_minute:
            _, wait = _gcra(token_tat, now, rate.tokens_per_minute, 1)
            if wait > 0:
                raise _refused(wait, f"{rate.tokens_per_minute} tokens")
        if rate.requests_per_minute:
            request_tat, wait = _gcra(request_tat, now, rate.requests_per_minute, 1)
            if wait > 0:
                raise _refused(wait, f"{rate.requests_per_minute} requests")
            self._tats[(key_id, "requests")] = request_tat
        return _state(rate, now, request_tat, token_tat)

    async def spend(self, key_id: str, rate: Rate, tokens: int) -> None:
        """Counts the tokens of a finished turn against the key's token limit."""
        if not rate.tokens_per_minute or tokens <= 0:
            return
        now = time.monotonic()
        tat = self._tats.get((key_id, "tokens"), now)
        self._tats[(key_id, "tokens")], _ = _gcra(tat, now, rate.tokens_per_minute, tokens)


def _state(rate: Rate, now: float, request_tat: float, token_tat: float) -> LimitState:
    return LimitState(
        rate=rate,
        remaining_requests=(
            _remaining(request_tat, now, rate.requests_per_minute)
            if rate.requests_per_minute
            else 0
        ),
        reset_requests_seconds=max(0.0, request_tat - now),
        remaining_tokens=(
            _remaining(token_tat, now, rate.tokens_per_minute) if rate.tokens_per_minute else 0
        ),
        reset_tokens_seconds=max(0.0, token_tat - now),
    )


# KEYS: requests TAT, tokens TAT. ARGV: now (s), requests/min, tokens/min, token cost,
# window (s), key expiry (s). Returns {allowed (1/0), wait (s), requests TAT, tokens TAT, the
# limit that refused ('requests' / 'tokens' / '')}.
_SCRIPT = """
local now = tonumber(ARGV[1])
local rpm = tonumber(ARGV[2])
local tpm = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local expiry = tonumber(ARGV[6])
local rtat = tonumber(redis.call('GET', KEYS[1]) or now)
local ttat = tonumber(redis.call('GET', KEYS[2]) or now)
if rtat < now then rtat = now end
if ttat < now then ttat = now end
if cost > 0 then
  ttat = ttat + (window / tpm) * cost
  redis.call('SET', KEYS[2], tostring(ttat), 'EX', expiry)
  return {1, '0', tostring(rtat), tostring(ttat), ''}
end
if tpm > 0 then
  local wait = ttat + window / tpm - now - window
  if wait > 0 then return {0, tostring(wait), tostring(rtat), tostring(ttat), 'tokens'} end
end
if rpm > 0 then
  local new = rtat + window / rpm
  local wait = new - now - window
  if wait > 0 then return {0, tostring(wait), tostring(rtat), tostring(ttat), 'requests'} end
  rtat = new
  redis.call('SET', KEYS[1], tostring(rtat), 'EX', expiry)
end
return {1, '0', tostring(rtat), tostring(ttat), ''}
"""


class RedisRateLimiter:
    """Counters in Redis, shared by every replica; one script call per check."""

    def __init__(self, url: str, on_health: Callable[[bool], None] | None = None) -> None:
        import redis.asyncio as redis

        self._client = redis.Redis.from_url(
            url, socket_connect_timeout=0.5, socket_timeout=0.5, health_check_interval=30
        )
        self._script = self._client.register_script(_SCRIPT)
        self._healthy = True
        self._warned_at = 0.0
        self._on_health = on_health

    async def ping(self) -> None:
        """Checks Redis at start, so that an unreachable one is reported at once."""
        from redis.exceptions import RedisError

        try:
            await self._client.ping()
        except (RedisError, OSError) as error:
            self._set_healthy(False, error)

    @property
    def healthy(self) -> bool:
        """Whether the last call reached Redis."""
        return self._healthy

    async def close(self) -> None:
        """Closes the connection to Redis."""
        await self._client.aclose()

    def _set_healthy(self, healthy: bool, error: BaseException | None = None) -> None:
        if not healthy and time.monotonic() - self._warned_at > _WARN_EVERY_SECONDS:
            self._warned_at = time.monotonic()
            log.warning("Redis is unreachable; rate limits are not enforced: %s", error)
        if healthy != self._healthy:
            if healthy:
                log.warning("Redis is reachable again; rate limits are enforced")
            self._healthy = healthy
            if self._on_health is not None:
                self._on_health(healthy)

    async def admit(self, key_id: str, rate: Rate) -> LimitState:
        """Counts one request in one script call; admits it while Redis is down."""
        result = await self._run(key_id, rate, 0)
        now = time.time()
        if result is None:
            return _state(rate, now, now, now)
        allowed, wait, request_tat, token_tat, refused_by = result
        if not allowed:
            if refused_by == "tokens":
                raise _refused(wait, f"{rate.tokens_per_minute} tokens")
            raise _refused(wait, f"{rate.requests_per_minute} requests")
        return _state(rate, now, request_tat, token_tat)

    async def spend(self, key_id: str, rate: Rate, tokens: int) -> None:
        """Counts the tokens of a finished turn; they go uncounted while Redis is down."""
        if rate.tokens_per_minute and tokens > 0:
            await self._run(key_id, rate, tokens)

    async def _run(
        self, key_id: str, rate: Rate, cost: int
    ) -> tuple[bool, float, float, float, str] | None:
        from redis.exceptions import RedisError

        keys = [
            f"switchboard:ratelimit:{key_id}:requests",
            f"switchboard:ratelimit:{key_id}:tokens",
        ]
        args: list[str | int | float] = [
            repr(time.time()),
            rate.requests_per_minute,
            rate.tokens_per_minute,
            cost,
            WINDOW_SECONDS,
            _REDIS_KEY_SECONDS,
        ]
        try:
            allowed, wait, request_tat, token_tat, which = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as error:
            self._set_healthy(False, error)
            return None
        self._set_healthy(True)
        refused_by = which.decode() if isinstance(which, bytes) else str(which)
        return bool(int(allowed)), float(wait), float(request_tat), float(token_tat), refused_by
