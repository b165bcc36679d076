"""A browser's stand-in on the web view during a benchmark: loads the page and its files
once, then reads the WebSocket's updates until SIGTERM, and prints what it got as JSON
(``{"messages": n, "bytes": n, "updates": n, "page_bytes": n}``).

``python -m bench.webviewer http://127.0.0.1:PORT/``
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys


async def watch(url: str) -> dict:
    import aiohttp

    counts = {"messages": 0, "bytes": 0, "updates": 0, "page_bytes": 0}
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    base = url.rstrip("/")
    async with aiohttp.ClientSession() as session:
        for path in ("/", "/static/market.js", "/static/common.js", "/static/uPlot.iife.min.js"):
            async with session.get(base + path) as r:
                counts["page_bytes"] += len(await r.read())
        async with session.ws_connect(base.replace("http", "ws", 1) + "/ws") as ws:
            async def read():
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    counts["messages"] += 1
                    counts["bytes"] += len(msg.data)
                    counts["updates"] += msg.data.startswith('{"type":"update"')
            reader = asyncio.ensure_future(read())
            await asyncio.wait([reader, asyncio.ensure_future(stop.wait())],
                               return_when=asyncio.FIRST_COMPLETED)
            reader.cancel()
    return counts


if __name__ == "__main__":
    print(json.dumps(asyncio.run(watch(sys.argv[1]))), flush=True)
