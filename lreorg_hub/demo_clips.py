"""Synthetic clips made from still photos, for the video tests, ``lreorg bench video`` and
trying the video command offline: a still photo repeated, a pan, a zoom, two faces crossing,
a face leaving the frame and coming back. Frames are made on demand (a generator), so a
5-minute clip never sits in memory; :func:`write_clip` encodes them with PyAV.

Beside ``demo.py`` (top of the library): numpy, Pillow and ``lreorg_hub.image.video``.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

__all__ = ["SCENES", "face_sprite", "scene_frames", "write_clip"]


def face_sprite(photo: Image.Image, box: Sequence[float], grow: float = 0.6) -> Image.Image:
    """The face in ``box`` (x0, y0, x1, y1) with ``grow`` × its size of context around it."""
    x0, y0, x1, y1 = box
    dx, dy = grow * (x1 - x0), grow * (y1 - y0)
    return photo.crop((int(max(x0 - dx, 0)), int(max(y0 - dy, 0)),
                       int(min(x1 + dx, photo.width)), int(min(y1 + dy, photo.height))))


def _canvas(size: tuple[int, int]) -> np.ndarray:
    """A fixed, smooth background (a gradient), so only the faces move."""
    w, h = size
    x = np.linspace(40, 200, w, dtype=np.float32)[None, :, None]
    y = np.linspace(60, 120, h, dtype=np.float32)[:, None, None]
    return np.broadcast_to((x * 0.6 + y * 0.4).astype(np.uint8), (h, w, 3)).copy()


def _place(canvas: np.ndarray, sprite: Image.Image, centre: tuple[float, float],
           height: float) -> None:
    scale = height / sprite.height
    s = sprite.resize((max(1, round(sprite.width * scale)), max(1, round(height))),
                      Image.BILINEAR)
    a = np.asarray(s)
    h, w = canvas.shape[:2]
    x0, y0 = int(round(centre[0] - a.shape[1] / 2)), int(round(centre[1] - a.shape[0] / 2))
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + a.shape[1], w), \
        min(y0 + a.shape[0], h)
    if cx0 < cx1 and cy0 < cy1:
        canvas[cy0:cy1, cx0:cx1] = a[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]


def _still(sprite, size, t):
    return [((size[0] / 2, size[1] / 2), size[1] * 0.8)]


def _pan(sprite, size, t):   # the face drifts from the left third to the right third
    return [((size[0] * (0.3 + 0.4 * t), size[1] / 2), size[1] * 0.75)]


def _zoom(sprite, size, t):  # the face grows from half to nine tenths of the frame height
    return [((size[0] / 2, size[1] / 2), size[1] * (0.5 + 0.4 * t))]


def _crossing(sprite, size, t):  # two faces pass each other; the first one is drawn behind
    return [((size[0] * (0.15 + 0.7 * t), size[1] * 0.5), size[1] * 0.6),
            ((size[0] * (0.85 - 0.7 * t), size[1] * 0.5), size[1] * 0.6)]


def _leave_and_return(sprite, size, t):  # out through the right edge, back after a while
    x = 0.5 + 1.4 * t if t < 0.5 else 1.9 - 1.4 * t
    return [((size[0] * x, size[1] / 2), size[1] * 0.75)]


#: name → (sprite placements at time t in [0, 1]: [(centre, height)]).
SCENES: dict[str, Callable] = {"still": _still, "pan": _pan, "zoom": _zoom,
                               "crossing": _crossing, "leave-and-return": _leave_and_return}


def scene_frames(scene: str, sprite: Image.Image, frames: int,
                 size: tuple[int, int] = (160, 120)) -> Iterator[np.ndarray]:
    """``frames`` (H, W, 3) uint8 frames of ``scene`` (one of :data:`SCENES`), made one by
    one; ``size`` = (width, height)."""
    place = SCENES[scene]
    for i in range(frames):
        canvas = _canvas(size)
        for centre, height in place(sprite, size, i / max(frames - 1, 1)):
            _place(canvas, sprite, centre, height)
        yield canvas


def write_clip(path: str | Path, frames: Iterable[np.ndarray], *, fps: float = 30,
               pts: Sequence[int] | None = None, time_base: Fraction | None = None,
               rotation: int = 0, codec: str = "libx264", audio_seconds: float = 0.0,
               audio_codec: str = "aac", metadata: dict | None = None,
               stream_metadata: dict | None = None) -> Path:
    """Encode frames (as stored, i.e. before any ``rotation``) into ``path`` with PyAV.

    pts / time_base: each frame's timestamp (variable frame rate); default 1/fps steps.
    rotation: display matrix, degrees counter-clockwise (a phone clip's). audio_seconds: a
    440 Hz tone of that length. metadata / stream_metadata: container / video stream tags
    (in a .mov, ``location`` / ``make`` / ``model`` are written as ``©xyz`` / ``©mak`` /
    ``©mod``, as phone cameras write them).
    """
    import av

    path = Path(path)
    time_base = time_base or Fraction(1, 1000)
    with av.open(str(path), "w") as out:
        out.metadata.update(metadata or {})
        frames = iter(frames)
        first = next(frames)
        video = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        video.height, video.width = first.shape[:2]
        video.pix_fmt = "yuv420p"
        video.time_base = video.codec_context.time_base = time_base
        video.metadata.update(stream_metadata or {})
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio_seconds:
            sound = out.add_stream(audio_codec, rate=48000, layout="mono")
        step = 1 / (fps * time_base)
        for i, image in enumerate(_chain(first, frames)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = int(pts[i]) if pts is not None else int(round(i * step))
            frame.time_base = time_base
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if sound is not None:
            total = int(audio_seconds * 48000)
            for start in range(0, total, 1024):
                n = min(1024, total - start)
                t = (start + np.arange(n)) / 48000
                chunk = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
                af = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                af.sample_rate, af.pts = 48000, start
                out.mux(sound.encode(af))
            out.mux(sound.encode())
    return path


def _chain(first, rest):
    yield first
    yield from rest
