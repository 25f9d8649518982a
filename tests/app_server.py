"""Start ``python app.py`` on a loopback port (shared by the app tests and the load check)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    # Gradio cannot bind port 0 itself, so pick a free one and hand it over.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """``python app.py ARGS`` as a child process; ``stop()`` sends SIGINT or SIGTERM (both
    purge the app's files) and returns the exit code."""

    def __init__(self, args: list[str], env: dict[str, str], temp_dir: Path,
                 log_path: Path, timeout: float = 240.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.temp_dir = Path(temp_dir)
        self.log_path = Path(log_path)
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
                    "GRADIO_TEMP_DIR": str(self.temp_dir), "PYTHONUNBUFFERED": "1", **env}
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port",
             str(self.port), *args], cwd=ROOT, env=full_env, stdout=self._log,
            stderr=subprocess.STDOUT)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.process.returncode}:\n"
                                   f"{self.log()[-4000:]}")
            try:
                if httpx.get(self.url + "gradio_api/info", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.process.kill()
        raise RuntimeError(f"app.py did not answer within {timeout:.0f} s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text("utf-8", errors="replace")

    def files(self) -> list[Path]:
        """Files in Gradio's temporary folder (uploads, results, example copies)."""
        return sorted(p for p in self.temp_dir.rglob("*") if p.is_file())

    def stop(self, timeout: float = 30.0, sig: int = signal.SIGINT) -> int:
        """Stop the app with ``sig`` (SIGTERM is how Docker and Spaces stop it) and return its
        exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def peak_rss_mib(self) -> float:
        """Peak resident memory of the server process so far (VmHWM), MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")
