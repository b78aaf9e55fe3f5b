"""Holds each streamed microphone chunk at the door until Gradio has taken the one before it.

Gradio (6.31) keeps one slot per streaming event: `POST .../stream/{event_id}` overwrites the event's data, and the
event's loop takes whatever sits there once the handler's previous call returns. A call slower than `stream_every` (a
busy CPU, a decoder being built, the GIL held by a beam search catching up) therefore loses the chunks that arrived
meanwhile: audio silently missing from the middle of a recording (seen: a handler stalled 1.3 s lost two of its 0.4 s
chunks; likely why the browser test's waiting page once heard half a second of garble after its catch-up). The
browser posts each chunk without waiting for an answer, so the fix belongs on the server: this ASGI middleware queues
the posts of one event in arrival order and lets each through only when the slot is empty. The close that ends a
recording queues behind its chunks the same way, so the last words are decoded too. What it cannot mend: Gradio's
audio component drops the chunks it records while its stream is 'waiting' (submitted, not yet started): 0.4-0.8 s
after the first chunk of every recording never leaves the browser (seen in tests/test_chunk_gate.py).

Held chunks cost a request each and are bounded by MAX_HOLD_SECONDS; after that a chunk goes through as Gradio would
have taken it. The middleware reads Gradio's event objects (`find_event`), which is version-bound: gradio is pinned in
requirements.txt and tests/test_chunk_gate.py drives a real Gradio app in Chromium to catch a change.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.middleware import Middleware

STREAM_POST = re.compile(r"/stream/([0-9a-f]{32})(/close)?$")
POLL_SECONDS = 0.005
MAX_HOLD_SECONDS = 30.0  # a chunk is never held longer; a stalled event then loses audio as it would without the gate
# Between the event loop's wake-up (its signal cleared) and its reading the slot lie a few event-loop iterations with
# no I/O in them (the waiter task finishing, asyncio.wait returning); this many yields lets them all run first.
YIELDS_BEFORE_POSTING = 10


@dataclass
class _Door:
    """The posts of one streaming event: one at a time through the lock, in arrival order (asyncio.Lock is fair)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class ChunkGate:
    """ASGI middleware. `find_event(event_id)` returns Gradio's event (with `.signal`, `.run_time`, `.closed`) or None."""

    def __init__(self, app, find_event: Callable[[str], Any]):
        self.app = app
        self.find_event = find_event
        self._doors: dict[str, _Door] = {}
        self.held_seconds = 0.0  # how long chunks waited at the door in all (read by the tests)

    async def __call__(self, scope, receive, send) -> None:
        match = STREAM_POST.search(scope.get("path", "")) if scope["type"] == "http" and scope.get("method") == "POST" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        event_id = match[1]
        if event_id not in self._doors:
            self._forget_ended_events()
        door = self._doors.setdefault(event_id, _Door())
        door.users += 1
        try:
            async with door.lock:
                started = time.monotonic()
                await self._wait_for_empty_slot(event_id)
                self.held_seconds += time.monotonic() - started
                await self.app(scope, receive, send)  # still holding the lock: the next post must see this one's signal
        finally:
            door.users -= 1
            if door.users == 0 and (match[2] or self.find_event(event_id) is None):
                self._doors.pop(event_id, None)

    def _forget_ended_events(self) -> None:
        """Doors of recordings that ended without a close (a time limit, a lost tab)."""
        for event_id in [key for key, door in self._doors.items() if door.users == 0 and self.find_event(key) is None]:
            del self._doors[event_id]

    async def _wait_for_empty_slot(self, event_id: str) -> None:
        """Until the event's first call has run and the loop has taken the chunk posted last (or the event is gone)."""
        deadline = time.monotonic() + MAX_HOLD_SECONDS
        while time.monotonic() < deadline:
            event = self.find_event(event_id)
            if event is None or event.closed:
                return  # Gradio answers it as it always does
            if event.run_time > 0 and not event.signal.is_set():
                for _ in range(YIELDS_BEFORE_POSTING):
                    await asyncio.sleep(0)
                if not event.signal.is_set():
                    return
            await asyncio.sleep(POLL_SECONDS)


def gate_middleware(blocks) -> Middleware:
    """The gate for a Blocks, for `launch(app_kwargs={"middleware": [...]})`: it finds events as Gradio's own stream
    route does, in the queue's event table."""
    return Middleware(ChunkGate, find_event=lambda event_id: blocks._queue.event_ids_to_events.get(event_id))
