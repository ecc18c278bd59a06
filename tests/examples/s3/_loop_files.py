"""Run NewS3ObjectsTrigger in a fresh interpreter; print the files opened on the event loop's thread.

``python -m tests.examples.s3._loop_files ENDPOINT BUCKET`` prints one JSON object: the events' object
keys and the paths opened by the loop's thread while the trigger ran. Fresh, because in a process
that already imported aiobotocore, or created clients, nothing would be left to read from disk.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from typing import Any


def main(endpoint_url: str, bucket: str) -> None:
    assert "aiobotocore" not in sys.modules
    from examples.s3 import NewS3ObjectsTrigger
    from stateful.testing import run_trigger

    loop_thread = threading.current_thread()
    opened: list[str] = []
    recording = threading.Event()

    def audit(event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and recording.is_set() and threading.current_thread() is loop_thread:
            opened.append(str(args[0]))

    sys.addaudithook(audit)
    trigger = NewS3ObjectsTrigger(bucket, endpoint_url=endpoint_url, poll_interval=0.02)

    async def run() -> list[Any]:
        recording.set()
        try:
            result = await run_trigger(trigger, until=lambda: trigger.polls >= 2, idle_timeout=60)
        finally:
            recording.clear()
        return result.events

    events = asyncio.run(run())
    keys = [obj["key"] for event in events for obj in event.payload["objects"]]
    print(json.dumps({"keys": keys, "opened": opened, "aiobotocore": "aiobotocore" in sys.modules}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
