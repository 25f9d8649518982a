"""A minimal headless-Chromium driver over the DevTools protocol on a pipe.

``--remote-debugging-pipe`` makes Chromium read JSON commands (NUL-terminated) on fd 3 and
write replies and events on fd 4, so no WebSocket library or open port is needed.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--no-default-browser-check", "--hide-scrollbars",
         "--remote-debugging-pipe"]


class Browser:
    """One page in a fresh profile; use as a context manager."""

    def __init__(self, binary: str, profile: Path, width: int = 1280, height: int = 1400,
                 flags: list[str] | None = None):
        self.width, self.height = width, height
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire_pipes():  # runs in the child: Chromium expects fds 3 (in) and 4 (out)
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.process = subprocess.Popen(
            [binary, *FLAGS, *(flags or []), f"--user-data-dir={profile}",
             f"--window-size={width},{height}",
             "about:blank"], preexec_fn=wire_pipes, pass_fds=(3, 4),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.session = None

    def __enter__(self) -> "Browser":
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        self.send("Page.enable")
        self.resize(self.width, self.height)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.send("Browser.close", _session=False)
        except (OSError, RuntimeError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        os.close(self._to_child)
        os.close(self._from_child)

    # -- protocol -----------------------------------------------------------------------------
    def send(self, method: str, _session: bool = True, timeout: float = 60.0, **params):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if _session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
        raise TimeoutError(f"no reply to {method} within {timeout} s")

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    # -- page helpers -------------------------------------------------------------------------
    def navigate(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('text')} "
                               f"{result['exceptionDetails'].get('exception', {})}")
        return result["result"].get("value")

    def wait_for(self, condition: str, timeout: float = 30.0, every: float = 0.25) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.evaluate(f"Boolean({condition})"):
                    return
            except RuntimeError:
                pass
            time.sleep(every)
        raise TimeoutError(f"page never satisfied {condition!r} within {timeout} s")

    def upload(self, selector: str, path: Path) -> None:
        """Choose ``path`` in the file input ``selector``, as a visitor picking a file."""
        root = self.send("DOM.getDocument", depth=0)["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        if not node:
            raise RuntimeError(f"no element matches {selector!r}")
        self.send("DOM.setFileInputFiles", files=[str(path)], nodeId=node)

    def resize(self, width: int, height: int) -> None:
        """Emulate a screen of this size (a phone when narrower than 600 px)."""
        self.width, self.height = width, height
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=width < 600)

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        Path(path).write_bytes(base64.b64decode(data["data"]))
