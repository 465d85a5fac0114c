"""The watcher that cancels a call when its client goes away leaves nothing behind."""

from __future__ import annotations

import asyncio
import gc
import weakref

from http_edge.streaming import DisconnectWatcher


class _Call:
    def cancel(self) -> bool:
        return True


async def test_a_stopped_watcher_is_freed_without_the_garbage_collector() -> None:
    """A request whose client stayed leaves no reference cycle: its objects (here the call the
    watcher holds) are freed as soon as the request ends, not at the next collection."""

    async def receive() -> dict[str, str]:
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    call = _Call()
    watcher = DisconnectWatcher(receive, call.cancel)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    freed = weakref.ref(call)
    gc.disable()
    try:
        watcher.stop()
        del watcher, call
        for _ in range(3):
            await asyncio.sleep(0)
        assert freed() is None
    finally:
        gc.enable()
