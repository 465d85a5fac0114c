"""What replicas tell each other through Redis: a cancel sent to one replica stops the turn that
another one runs. Each replica listens on one channel; a request names a reply channel on which
the replicas that cancelled something answer how many turns they stopped."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable

log = logging.getLogger(__name__)

CHANNEL = "switchboard:cancel-turn"
# How long a cancel waits for other replicas to answer.
REPLY_SECONDS = 0.5


class ReplicaBus:
    """Passes cancels between replicas over Redis pub/sub."""

    def __init__(self, url: str, cancel_here: Callable[[str], int]) -> None:
        import redis.asyncio as redis

        self._client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        self._cancel_here = cancel_here
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Starts listening for the other replicas' cancels."""
        self._listener = asyncio.create_task(self._listen())

    async def stop_listening(self) -> None:
        """Stops answering other replicas' cancels."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None

    async def close(self) -> None:
        """Stops listening and closes the connection to Redis."""
        await self.stop_listening()
        await self._client.aclose()

    async def cancel_elsewhere(self, session_id: str) -> int:
        """Asks the other replicas to cancel the session's running turns; returns how many
        they cancelled (0 when Redis cannot be reached)."""
        from redis.exceptions import RedisError

        reply_channel = f"{CHANNEL}:reply:{secrets.token_hex(8)}"
        cancelled = 0
        try:
            async with self._client.pubsub() as replies:
                await replies.subscribe(reply_channel)
                request = json.dumps({"session": session_id, "reply": reply_channel})
                listeners = await self._client.publish(CHANNEL, request)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + REPLY_SECONDS
                answered = 0
                # Every listening replica answers, this one included (with 0: it looked first).
                while answered < listeners and loop.time() < deadline:
                    message = await replies.get_message(
                        ignore_subscribe_messages=True, timeout=deadline - loop.time()
                    )
                    if message is not None:
                        answered += 1
                        cancelled += int(message["data"])
        except (RedisError, OSError) as error:
            log.warning("cannot ask other replicas to cancel a turn: %s", error)
        return cancelled

    async def _listen(self) -> None:
        from redis.exceptions import RedisError

        while True:
            try:
                async with self._client.pubsub() as requests:
                    await requests.subscribe(CHANNEL)
                    async for message in requests.listen():
                        if message.get("type") != "message":
                            continue
                        request = json.loads(message["data"])
                        count = self._cancel_here(str(request["session"]))
                        await self._client.publish(str(request["reply"]), str(count))
            except (RedisError, OSError, ValueError, KeyError) as error:
                log.warning("the replica channel failed; listening again in 1 s: %s", error)
                await asyncio.sleep(1)
