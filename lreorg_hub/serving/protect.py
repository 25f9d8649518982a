"""One visitor request, and the comparison of every method on one photo: the pipeline runs and
the page shows what its result holds (composed photos, crops, record), each image measured.

The work that needs the accelerator is :func:`protect_photo` (one request) and
:func:`compare_photo` (every method, in one call); :func:`gpu_seconds` estimates how long
either holds the GPU, for ZeroGPU's scheduler."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

from PIL import Image

from ..method import keywords as kw
from ..pipeline.options import ProtectOptions
from ..pipeline.registry import METHODS
from ..pipeline.results import NoFaceError
from .measure import Output, measure
from .requests import check_options, options_from_form, read_photo, spent_budget
from .runtime import Runtime
from .text import SHORT_NAMES, RequestError, page_sentence, seed_sentence, spent_sentence

__all__ = ["ProtectResult", "protect", "protect_photo", "Comparison", "comparison_options",
           "comparison_requests", "comparison_budget", "compare_photo", "COMPARISON_COLUMNS",
           "comparison_table", "compare_summary",
           "compare",
           "gpu_seconds"]


@dataclass
class ProtectResult:
    """Everything a visitor's request produced."""

    original: Image.Image
    main: Output                      # the protected photo (version 1)
    outputs: list[Output]             # "nothing kept" (when attributes are kept), versions
    record: dict                      # the public record: an OS-entropy seed is never in it
    seconds: float

    def measured(self) -> list[tuple[str, float | None, int, int]]:
        return [(o.caption, o.identity_similarity, o.faces_detected, o.faces_total)
                for o in self.outputs]


def protect(runtime: Runtime, data: bytes | None, options: ProtectOptions,
            progress=None) -> ProtectResult:
    """The visitor's request: decode in memory, then :func:`protect_photo`."""
    return protect_photo(runtime, read_photo(data, runtime.max_pixels), options, progress)


def protect_photo(runtime: Runtime, photo: Image.Image, options: ProtectOptions,
                  progress=None) -> ProtectResult:
    """Run the pipeline once (options already checked), then measure each output."""
    step = progress or (lambda fraction, desc=None: None)
    start = time.perf_counter()
    step(0.1, "finding faces and anonymizing")
    pipe = runtime.pipeline
    try:
        result = pipe(photo, options)
    except NoFaceError:
        raise RequestError(f"No face was found in this photo. Try one where the face is clearly "
                           f"visible and at least {pipe.min_face_size} pixels wide.") from None
    except ValueError as exc:  # the library's own one-sentence checks
        raise RequestError(page_sentence(str(exc), runtime.limits.max_epsilon,
                                         runtime.limits.max_samples)) from None
    step(0.6, "measuring the results")
    faces = result.faces
    outputs: list[Output] = []
    if result.anonymized_image is not None:  # attributes were kept: show the image before
        outputs.append(measure(runtime, faces, result.anonymized_image,
                               [f.anonymized for f in faces], "nothing kept"))
    image_method = METHODS[options.method].kind == "image"
    for s, image in enumerate(result.images):
        caption = SHORT_NAMES.get(options.method, options.method) if image_method \
            else f"version {s + 1}"
        outputs.append(measure(runtime, faces, image, [f.samples[s] for f in faces], caption))
    main = outputs[1] if result.anonymized_image is not None else outputs[0]
    step(1.0, "done")
    return ProtectResult(original=photo, main=main, outputs=outputs,
                         record=result.record.to_dict(), seconds=time.perf_counter() - start)


# -- comparing every method on one photo -------------------------------------------------------

@dataclass
class Comparison:
    method: str
    output: Output | None
    seconds: float
    error: str | None = None
    record: dict | None = None


def comparison_options(runtime: Runtime, method: str, seed, epsilon) -> ProtectOptions:
    """The settings for one method, checked: identity anonymized (LReOrg also keeps the
    paper's attributes), one version, the same seed and budget for every method."""
    recover = tuple(k for k in kw.DEFAULT_RECOVER if k in runtime.recoverable)
    return check_options(runtime, options_from_form(
        runtime, method, (kw.IDENTITY,), recover if method == "lreorg" else (), epsilon,
        seed=seed))


def comparison_requests(runtime: Runtime, seed, epsilon) -> list[ProtectOptions]:
    """Every available method's checked settings (before any photo is read)."""
    return [comparison_options(runtime, m, seed, epsilon) for m in runtime.methods]


def comparison_budget(runtime: Runtime, epsilon) -> dict[str, float]:
    """What comparing spends on one photo, per method that spends any (they add up)."""
    spent = {o.method: spent_budget(runtime, o)
             for o in comparison_requests(runtime, None, epsilon)}
    return {m: v for m, v in spent.items() if v is not None}


def compare_photo(runtime: Runtime, photo: Image.Image,
                  requests: Sequence[ProtectOptions]) -> list[Comparison]:
    """One photo through every method of ``requests``, in one call (one GPU allocation)."""
    rows: list[Comparison] = []
    for options in requests:
        start = time.perf_counter()
        try:
            result = protect_photo(runtime, photo, options)
        except RequestError as exc:  # e.g. no face: the same for every method, say it once
            if not rows:
                raise
            rows.append(Comparison(options.method, None, time.perf_counter() - start,
                                   str(exc)))
            continue
        result.main.caption = SHORT_NAMES.get(options.method, options.method)
        rows.append(Comparison(options.method, result.main, time.perf_counter() - start,
                               record=result.record))
    return rows


#: The comparison table's columns (similarity and note only when some row has one).
COMPARISON_COLUMNS = ("method", "similarity", "face found", "seconds", "note")


def comparison_table(rows: Sequence[Comparison]) -> dict:
    """The measurements, one row per method: {"headers": [...], "data": [[...], ...]}."""
    cells = [[SHORT_NAMES.get(r.method, r.method),
              None if r.output is None or r.output.identity_similarity is None
              else round(r.output.identity_similarity, 2),
              "" if r.output is None else f"{r.output.faces_detected} of {r.output.faces_total}",
              round(r.seconds, 1), r.error or ""] for r in rows]
    used = [i for i, name in enumerate(COMPARISON_COLUMNS)
            if name not in ("similarity", "note") or any(c[i] not in (None, "")
                                                                for c in cells)]
    return {"headers": [COMPARISON_COLUMNS[i] for i in used],
            "data": [[c[i] for i in used] for c in cells]}


def compare_summary(rows: Sequence[Comparison]) -> str:
    """The total privacy budget the comparison spent (from the records) and the seed."""
    records = [r.record for r in rows if r.record is not None]
    spent = {r["method"]: r["epsilon_total"] for r in records
             if r.get("epsilon_total") is not None}
    lines = [spent_sentence(spent)]
    seed = next((seed_sentence(r) for r in records if seed_sentence(r)), "")
    if seed:
        lines.append(seed)
    return "\n\n".join(lines)


def compare(runtime: Runtime, data: bytes | None, seed, epsilon,
            run=None) -> tuple[Image.Image, list[Comparison]]:
    """Check the settings, decode the photo, then ``run(photo, requests)`` (default
    :func:`compare_photo`; the app passes its GPU-scheduled version)."""
    requests = comparison_requests(runtime, seed, epsilon)
    photo = read_photo(data, runtime.max_pixels)
    run = run or (lambda photo, requests: compare_photo(runtime, photo, requests))
    return photo, run(photo, requests)


# -- how long the work holds a GPU (ZeroGPU schedules by it) ----------------------------------

#: Estimated GPU seconds on ZeroGPU for one call: moving the models to the GPU and warming up,
#: then each generated image (encode, generate, measure) and each image baseline. ZeroGPU
#: schedules shorter calls sooner and aborts a call that runs past its duration, so the
#: estimate is generous and capped at what one call may hold.
GPU_CALL_SECONDS, GPU_IMAGE_SECONDS, GPU_BASELINE_SECONDS, GPU_MAX_SECONDS = 20, 3, 1, 120


def gpu_seconds(requests: Sequence[ProtectOptions]) -> int:
    """How long ``requests`` (run in one call) may hold the GPU."""
    total = GPU_CALL_SECONDS
    for options in requests:
        if METHODS[options.method].kind == "image":
            total += GPU_BASELINE_SECONDS
        else:
            kept = 1 if options.recover else 0  # the "nothing kept" image as well
            total += GPU_IMAGE_SECONDS * ((options.samples or 1) + kept)
    return int(min(total, GPU_MAX_SECONDS))
