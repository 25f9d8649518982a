"""One short check of whether the Hugging Face Hub can be reached at all.

Without it, an unreachable Hub costs about 23 s per file (huggingface_hub retries a failed
HEAD request five times with back-off) before the cache is consulted; with it, loaders ask
once, with a short timeout, and go straight to the local cache (``local_files_only``) and a
clear message when the Hub is not there.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from huggingface_hub import constants

__all__ = ["hub_reachable", "PROBE_TIMEOUT_S"]

#: Seconds to wait for a TCP connection to the Hub endpoint.
PROBE_TIMEOUT_S = 2.0
_CACHE_S = 60.0  # one answer per minute per endpoint: a CLI run over many photos asks once
_answers: dict[str, tuple[float, bool]] = {}


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """False when offline mode is on (HF_HUB_OFFLINE) or the Hub endpoint (HF_ENDPOINT)
    gives no HTTP answer within ``timeout`` seconds (one request, no retries)."""
    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = constants.ENDPOINT
    now = time.monotonic()
    cached = _answers.get(endpoint)
    if cached is not None and now - cached[0] < _CACHE_S:
        return cached[1]
    # An HTTP request, not just a TCP connect: some networks accept every connection at a
    # proxy and never answer. Any HTTP status means the Hub is there.
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"),
                               timeout=timeout).close()
        answer = True
    except urllib.error.HTTPError:
        answer = True
    except (OSError, ValueError):  # URLError, timeouts, refused, unresolvable, bad URL
        answer = False
    _answers[endpoint] = (now, answer)
    return answer
