"""The app's Webcam tab without Gradio: each streamed frame through the visitor's own
``LiveSession`` (a tracker, one draw per confirmed track, and a secret that lives only in the
session state on the server: never sent to the page, never shown or written), and the frames
per second in a visitor's words.

A frame arrives inside the page's message and is anonymized in memory; the web framework
writes each anonymized frame it shows as a result file (``files``: deleted on the results'
schedule, and all of them when the server stops).

Layer 4 (beside the rest of ``serving``): the pipeline and below, never Gradio.
"""

from __future__ import annotations

import numpy as np

from ..pipeline.live import LiveSession
from .requests import check_options
from .runtime import Runtime
from .text import RequestError, _number, page_sentence
from .video import stream_options

__all__ = ["STREAM_EVERY", "TIME_LIMIT", "MAX_FRAME_PIXELS", "webcam_frame", "webcam_text"]

#: Seconds between the frames the browser sends, and the longest stream (then it stops and
#: the visitor starts it again; the session's tracks and draws are kept).
STREAM_EVERY, TIME_LIMIT = 0.1, 120
MAX_FRAME_PIXELS = 1280 * 720


def webcam_frame(runtime: Runtime, frame, session: LiveSession | None, method: str,
                 epsilon=None):
    """(the protected frame, the session, the rate in words) for one streamed frame."""
    if frame is None:
        return None, session, webcam_text(session)
    image = np.asarray(frame)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
        raise RequestError("The camera sent a frame that is not an RGB picture.")
    if image.shape[0] * image.shape[1] > MAX_FRAME_PIXELS:
        raise RequestError("The camera's frames are larger than 1280×720; choose a lower "
                           "resolution.")
    image = np.ascontiguousarray(image[..., :3])
    if session is None or session.options.method != method or \
            (epsilon is not None and session.options.epsilon != float(epsilon)):
        options = check_options(runtime, stream_options(runtime, method, epsilon))
        try:
            session = LiveSession(runtime.pipeline, options)
        except ValueError as exc:
            raise RequestError(page_sentence(str(exc), runtime.limits.max_epsilon,
                                             runtime.limits.max_samples)) from None
    return session.process(image), session, webcam_text(session)


def webcam_text(session: LiveSession | None) -> str:
    if session is None or session.fps is None:
        return "Start the camera: faces are replaced as the frames arrive."
    s = session.summary()
    budget = (f" Each face gets its new face once it has been seen for "
              f"{session.confirm_frames} frames (blurred until then) and keeps it while it "
              f"stays in view; each uses a privacy budget of {_number(s['epsilon_per_track'])}"
              f". New faces so far: {s['tracks_drawn']}."
              if s["epsilon_per_track"] is not None else "")
    return (f"**{s['fps']:.1f} frames per second** anonymized here (frame {s['frames']})."
            + budget)
