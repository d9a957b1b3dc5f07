"""Headless Chromium driven over the DevTools protocol, for tests that read what a page holds
after its scripts ran (a canvas chart's data, an iframe's document), polled with a deadline.

One browser serves a test's pages: `goto` moves its tab, and within MLflow's single-page app (its
routes live in the URL's #fragment) a move is a route change, not a fresh load of the app's
scripts, which cost a browser seconds of CPU each time.

aiohttp (a dependency of MLflow) speaks the protocol's websocket; nothing else is needed."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One tab; `value(js)` polls an expression until it returns something other than null."""

    def __init__(self, url: str, profile: Path, timeout: float = 120):
        self.timeout = timeout
        # Its temporary files (a singleton socket's folder) in a folder of ours that close()
        # removes: close() kills it, so it never removes them itself, and /tmp would keep one per
        # page. Not inside the profile: a socket's path must stay under 108 characters.
        self.tmp = tempfile.mkdtemp(prefix="chromium-")
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--window-size=1600,1400",
                "--remote-debugging-port=0",
                "--disable-site-isolation-trials",
                "--disable-features=IsolateOrigins,site-per-process",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env={**os.environ, "TMPDIR": self.tmp},
        )
        deadline, self.ws_url = time.monotonic() + 60, None
        while self.ws_url is None and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            found = re.search(r"DevTools listening on (ws://\S+)", line)
            if found:
                self.ws_url = found.group(1)
            elif not line and self.proc.poll() is not None:
                break
        if self.ws_url is None:
            self.close()
            raise AssertionError("chromium did not open its DevTools port")
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._open(url))

    async def _open(self, url: str) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.ws_url, max_msg_size=0)
        self.next_id = 0
        target = await self._call("Target.createTarget", {"url": url})
        attached = await self._call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        self.sid = attached["sessionId"]

    async def _call(
        self, method: str, params: dict[str, Any], session: bool = False
    ) -> dict[str, Any]:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.sid
        await self.ws.send_str(json.dumps(message))
        while True:
            reply = json.loads((await self.ws.receive(timeout=60)).data)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply["result"]

    async def _eval(self, js: str, context: int | None = None) -> Any:
        params = {
            "expression": js,
            "returnByValue": True,
            **({"contextId": context} if context else {}),
        }
        result = await self._call("Runtime.evaluate", params, session=True)
        return None if "exceptionDetails" in result else result["result"].get("value")

    def value(self, js: str, what: str, frame_url_part: str | None = None) -> Any:
        """The first non-null value of `js` (in the page, or in its frame whose URL holds
        `frame_url_part`), polled until the deadline; AssertionError naming `what` when none
        came."""

        async def poll() -> Any:
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                context = await self._frame_context(frame_url_part) if frame_url_part else None
                if context is not None or not frame_url_part:
                    got = await self._eval(js, context)
                    if got is not None:
                        return got
                await asyncio.sleep(0.5)
            raise AssertionError(f"the page never showed {what}")

        return self.loop.run_until_complete(poll())

    def goto(self, url: str) -> None:
        """Open `url` in the tab (a new #fragment of the same page: the app's own route change)."""
        self.loop.run_until_complete(self._call("Page.navigate", {"url": url}, session=True))

    def html_once(self, *texts: str) -> str:
        """The page's HTML once its text shows every one of `texts` (they are what tells that the
        page finished rendering what a test reads)."""
        js = (
            f"(() => {{ const t = document.body ? document.body.innerText : ''; "
            f"return {json.dumps(list(texts))}.every(x => t.includes(x)) ? "
            f"document.documentElement.outerHTML : null; }})()"
        )
        return self.value(js, " and ".join(repr(t) for t in texts))

    def screenshot(self) -> bytes:
        """The tab as a PNG."""
        shot = self.loop.run_until_complete(
            self._call("Page.captureScreenshot", {"format": "png"}, session=True)
        )
        return base64.b64decode(shot["data"])

    async def _frame_context(self, part: str) -> int | None:
        tree = (await self._call("Page.getFrameTree", {}, session=True))["frameTree"]
        frames, found = [tree], None
        while frames and found is None:
            node = frames.pop()
            if part in node["frame"].get("url", "") or part in node["frame"].get("name", ""):
                found = node["frame"]["id"]
            frames += node.get("childFrames", [])
        if found is None:
            return None
        world = await self._call("Page.createIsolatedWorld", {"frameId": found}, session=True)
        return world["executionContextId"]

    def close(self) -> None:
        if getattr(self, "loop", None) is not None:

            async def shut() -> None:
                await self.ws.close()
                await self.session.close()

            self.loop.run_until_complete(shut())
            self.loop.close()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Page:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
