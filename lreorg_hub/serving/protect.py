"""One visitor request, and the reviewers' comparison of every method: the pipeline runs once
per method and the page shows what its result holds (composed photos, crops, record)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from PIL import Image

from ..method import keywords as kw
from ..pipeline.options import ProtectOptions
from ..pipeline.registry import METHODS
from ..pipeline.results import NoFaceError
from .measure import Output, measure
from .requests import check_options, options_from_form, read_photo
from .runtime import Runtime
from .text import RequestError, _sentence

__all__ = ["ProtectResult", "protect", "protect_photo", "Comparison", "comparison_options",
           "compare"]


@dataclass
class ProtectResult:
    """Everything a visitor's request produced."""

    original: Image.Image
    main: Output                      # the protected photo (sample 0)
    outputs: list[Output]             # anonymized / recovered / samples (for the gallery)
    record: dict                      # the public record: an OS-entropy seed is never in it
    seconds: float


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
        raise RequestError(_sentence(str(exc))) from None
    step(0.6, "measuring the results")
    faces, recover = result.faces, result.record.recover
    outputs: list[Output] = []
    if result.anonymized_image is not None:
        outputs.append(measure(runtime, faces, result.anonymized_image,
                               [f.anonymized for f in faces],
                               f"anonymized ({', '.join(result.record.anonymize)} replaced)"))
    for s, image in enumerate(result.images):
        if METHODS[options.method].kind == "image":
            caption = options.method
        elif s == 0:
            caption = (f"recovered ({', '.join(recover)} kept), sample 1" if recover
                       else "anonymized, sample 1")
        else:
            caption = f"sample {s + 1}"
        outputs.append(measure(runtime, faces, image, [f.samples[s] for f in faces], caption))
    main = outputs[1] if result.anonymized_image is not None else outputs[0]
    for o in outputs:
        o.caption = f"{o.caption}: {o.measured()}"
    step(1.0, "done")
    return ProtectResult(original=photo, main=main, outputs=outputs,
                         record=result.record.to_dict(), seconds=time.perf_counter() - start)


@dataclass
class Comparison:
    method: str
    output: Output | None
    seconds: float
    error: str | None = None


def comparison_options(runtime: Runtime, method: str, seed, epsilon) -> ProtectOptions:
    """The reviewers' settings for one method, checked: identity anonymized (LReOrg also
    recovers the paper's attributes), the same seed and ε for every method."""
    recover = tuple(k for k in kw.DEFAULT_RECOVER if k in runtime.recoverable)
    return check_options(runtime, options_from_form(
        runtime, method, (kw.IDENTITY,), recover if method == "lreorg" else (), epsilon,
        seed=seed))


def compare(runtime: Runtime, data: bytes | None, seed, epsilon, progress=None,
            run=None) -> tuple[Image.Image, list[Comparison]]:
    """One photo through every available method with the same seed (reviewers' tab).

    ``run(photo, options)`` does one method (default :func:`protect_photo`; the app passes
    its GPU-scheduled version); ``progress`` is an optional ``gr.Progress``-like object.
    """
    run = run or (lambda photo, options: protect_photo(runtime, photo, options))
    requests = [comparison_options(runtime, m, seed, epsilon) for m in runtime.methods]
    photo = read_photo(data, runtime.max_pixels)
    rows = []
    iterate = progress.tqdm(requests, desc="methods") if progress is not None else requests
    for options in iterate:
        start = time.perf_counter()
        try:
            result = run(photo, options)
        except RequestError as exc:  # e.g. no face: the same for every method, say it once
            if not rows:
                raise
            rows.append(Comparison(options.method, None, time.perf_counter() - start, str(exc)))
            continue
        result.main.caption = f"{options.method}: {result.main.measured()}"
        rows.append(Comparison(options.method, result.main, time.perf_counter() - start))
    return photo, rows
