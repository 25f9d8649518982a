"""One short check of whether the Hugging Face Hub can be reached at all.

Without it, an unreachable Hub costs about 23 s per file (huggingface_hub retries a failed
HEAD request five times with back-off) before the cache is consulted; with it, loaders ask
once, with a short timeout, and go straight to the local cache (``local_files_only``) and a
clear message when the Hub is not there.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlparse

from huggingface_hub import constants

__all__ = ["hub_reachable", "PROBE_TIMEOUT_S"]

#: Seconds to wait for a TCP connection to the Hub endpoint.
PROBE_TIMEOUT_S = 2.0
_CACHE_S = 60.0  # one answer per minute per endpoint: a CLI run over many photos asks once
_answers: dict[str, tuple[float, bool]] = {}


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """False when offline mode is on (HF_HUB_OFFLINE) or the Hub endpoint (HF_ENDPOINT)
    does not accept a TCP connection within ``timeout`` seconds."""
    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = constants.ENDPOINT
    now = time.monotonic()
    cached = _answers.get(endpoint)
    if cached is not None and now - cached[0] < _CACHE_S:
        return cached[1]
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
        answer = True
    except (OSError, ValueError):
        answer = False
    _answers[endpoint] = (now, answer)
    return answer
