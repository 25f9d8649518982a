"""One visitor request, and the reviewers' comparison of every method."""

from __future__ import annotations

import time
from dataclasses import dataclass

from PIL import Image

from ..image.baselines import BASELINES
from ..image.faces import paste_back_all
from ..method import keywords as kw
from ..pipeline.registry import METHODS
from ..pipeline.results import NoFaceError
from .measure import Output, _measure, _relocate
from .requests import ProtectRequest, check_request, read_photo
from .runtime import Runtime
from .text import RequestError, _sentence

__all__ = ["ProtectResult", "protect", "protect_photo", "public_record", "Comparison",
           "comparison_request", "compare"]

@dataclass
class ProtectResult:
    """Everything a visitor's request produced."""

    original: Image.Image
    main: Output                      # the protected photo (recovered, sample 0)
    outputs: list[Output]             # anonymized / recovered / diverse (for the gallery)
    record: dict                      # public: an OS-entropy seed is never in it
    seconds: float


def public_record(record: dict) -> dict:
    """The record as shown and returned. The privacy record already drops an OS-entropy seed
    and states k·ε; this checks it once more at the edge, because the page is public."""
    out = dict(record)
    if out.get("seed_source") != "user":
        out["seed"] = None
    if out.get("epsilon") is not None and out.get("epsilon_total") is None:
        eps, k = out["epsilon"], int(out.get("samples") or 1)
        out["epsilon_total"] = "inf" if eps == "inf" else float(eps) * k
    return out


def protect(runtime: Runtime, data: bytes | None, request: ProtectRequest,
            progress=None) -> ProtectResult:
    """The visitor's request: decode in memory, then :func:`protect_photo`."""
    return protect_photo(runtime, read_photo(data, runtime.max_pixels), request, progress)


def protect_photo(runtime: Runtime, photo: Image.Image, request: ProtectRequest,
                  progress=None) -> ProtectResult:
    """Run the pipeline once, then compose and measure each output."""
    step = progress or (lambda fraction, desc=None: None)
    start = time.perf_counter()
    step(0.1, "finding faces and anonymizing")
    pipe = runtime.pipeline
    given = dict(anonymize=list(request.anonymize), recover=list(request.recover),
                 epsilon=request.epsilon, rank_window=request.rank_window,
                 mechanism=request.mechanism, seed=request.seed, samples=request.samples,
                 strength=request.strength)
    applies = METHODS[request.method].options  # an option that does not apply is an error
    options = {k: v for k, v in given.items() if k in applies and v is not None}
    try:
        result = pipe(photo, method=request.method, **options)
    except NoFaceError:
        raise RequestError(f"No face was found in this photo. Try one where the face is clearly "
                           f"visible and at least {pipe.detector.min_face_size} pixels wide."
                           ) from None
    except ValueError as exc:  # the library's own one-sentence checks
        raise RequestError(_sentence(str(exc))) from None
    step(0.6, "composing and measuring the results")
    faces = _relocate(pipe, photo, result.record.get("faces_processed", []))
    kept = ", ".join(request.recover)
    outputs: list[Output] = []
    if request.method in BASELINES:
        main = _measure(runtime, faces, result.image, request.method)
        outputs.append(main)
    else:
        anonymized = [f.anonymized for f in result.faces]
        if request.recover and all(a is not None for a in anonymized):
            composed = paste_back_all(photo, faces, anonymized, feather=pipe.feather)
            outputs.append(_measure(runtime, faces, composed,
                                    f"anonymized ({', '.join(request.anonymize)} replaced)"))
        label = f"recovered ({kept} kept)" if kept else "anonymized"
        main = _measure(runtime, faces, result.image, f"{label}, sample 1")
        outputs.append(main)
        for s in range(1, min(len(f.diverse) for f in result.faces)):
            composed = paste_back_all(photo, faces, [f.diverse[s] for f in result.faces],
                                      feather=pipe.feather)
            outputs.append(_measure(runtime, faces, composed, f"sample {s + 1}"))
    for o in outputs:
        o.caption = f"{o.caption}: {o.measured()}"
    step(1.0, "done")
    return ProtectResult(original=photo, main=main, outputs=outputs,
                         record=public_record(result.record),
                         seconds=time.perf_counter() - start)


@dataclass
class Comparison:
    method: str
    output: Output | None
    seconds: float
    error: str | None = None


def comparison_request(runtime: Runtime, method: str, seed, epsilon) -> ProtectRequest:
    """The reviewers' settings for one method: identity anonymized (LReOrg also recovers the
    paper's attributes), the same seed and ε for every method."""
    anonymize = [] if method in BASELINES else [kw.IDENTITY]
    recover = ([k for k in kw.DEFAULT_RECOVER if k in runtime.recoverable]
               if method == "lreorg" else [])
    return check_request(runtime, method, anonymize, recover, epsilon, seed=seed)


def compare(runtime: Runtime, data: bytes | None, seed, epsilon, progress=None,
            run=None) -> tuple[Image.Image, list[Comparison]]:
    """One photo through every available method with the same seed (reviewers' tab).

    ``run(photo, request)`` does one method (default :func:`protect_photo`; the app passes
    its GPU-scheduled version); ``progress`` is an optional ``gr.Progress``-like object.
    """
    run = run or (lambda photo, request: protect_photo(runtime, photo, request))
    requests = [comparison_request(runtime, m, seed, epsilon) for m in runtime.methods]
    photo = read_photo(data, runtime.max_pixels)
    rows = []
    iterate = progress.tqdm(requests, desc="methods") if progress is not None else requests
    for request in iterate:
        start = time.perf_counter()
        try:
            result = run(photo, request)
        except RequestError as exc:  # e.g. no face: the same for every method, say it once
            if not rows:
                raise
            rows.append(Comparison(request.method, None, time.perf_counter() - start, str(exc)))
            continue
        result.main.caption = f"{request.method}: {result.main.measured()}"
        rows.append(Comparison(request.method, result.main, time.perf_counter() - start))
    return photo, rows
