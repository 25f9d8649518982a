"""The golden case: every method on the demo weights with fixed seeds (issue 16's safety net).

``run_golden()`` builds the demo backbone, bundle and style-mix groups (seed 0), runs every
method on one real photo (scikit-image's astronaut, halved to 256 px) and on its aligned crop,
and returns plain arrays and records. ``tests/golden/expected.npz`` and
``tests/golden/records.json`` hold what the code gave when the golden test was committed;
``tests/test_golden.py`` compares against them (images within 1 grey level).

Regenerate only on purpose (a change that is meant to alter outputs), and say why in the
commit: ``.venv/bin/python tests/golden_case.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

GOLDEN = Path(__file__).resolve().parent / "golden"
METHODS = ("lreorg", "style-mix", "laplace", "k-anonymity", "blur", "pixelate", "mask")
LATENT = {"lreorg", "style-mix", "laplace", "k-anonymity"}
SEED = 7
SAMPLES = 2


def golden_photo():
    from PIL import Image
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((256, 256), Image.LANCZOS)


def build_golden_pipeline():
    from lreorg_hub.demo import build_demo_backbone, build_demo_bundle, build_demo_style_mix
    from lreorg_hub import LReOrgPipeline

    backbone = build_demo_backbone(0)
    bundle = build_demo_bundle(backbone, 0)
    style_mix = build_demo_style_mix(backbone, 0)
    return LReOrgPipeline(bundle, backbone.encoder, backbone.generator, backbone.latent_avg,
                          style_mix=style_mix, device="cpu")


def _array(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _options(method: str) -> dict:
    if method in LATENT and method != "k-anonymity":
        return {"seed": SEED, "samples": SAMPLES}
    return {}


def _record(record: dict) -> dict:
    """The record as JSON text would hold it (tuples → lists, 'inf' strings)."""
    return json.loads(json.dumps(record, sort_keys=True))


def read_result(result) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and the record of one pipeline result (the only place that knows the
    result type; updated when the result type changes, the data stays)."""
    arrays = {"image": _array(result.image)}
    for j, face in enumerate(result.faces):
        arrays[f"face{j}.aligned"] = _array(face.aligned)
        if face.anonymized is not None:
            arrays[f"face{j}.anonymized"] = _array(face.anonymized)
        for k, sample in enumerate(face.samples):
            arrays[f"face{j}.sample{k}"] = _array(sample)
    return arrays, _record(result.record.to_dict())


def run_golden(pipe=None) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    pipe = pipe or build_golden_pipeline()
    photo = golden_photo()
    arrays, records = {}, {}
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # CPU sums depend on the thread count
    try:
        cases = [(m, photo, False) for m in METHODS]
        crop = pipe(photo, method="lreorg", seed=SEED).faces[0].aligned
        cases.append(("lreorg-aligned", crop, True))
        for name, image, aligned in cases:
            method = name.split("-aligned")[0]
            result = pipe(image, method=method, aligned=aligned, anonymized_crops=True,
                          **_options(method))
            a, r = read_result(result)
            arrays.update({f"{name}/{k}": v for k, v in a.items()})
            records[name] = r
    finally:
        torch.set_num_threads(before)
    return arrays, records


if __name__ == "__main__":
    GOLDEN.mkdir(exist_ok=True)
    arrays, records = run_golden()
    np.savez_compressed(GOLDEN / "expected.npz", **arrays)
    (GOLDEN / "records.json").write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(arrays)} arrays and {len(records)} records to {GOLDEN}")
