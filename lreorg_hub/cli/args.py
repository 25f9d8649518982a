"""Argument types and the argument groups the sub-commands share, each defined once.

Only plain Python and the torch-free registry are imported at module level, so building the
parser (``lreorg --help``) loads no torch.
"""

from __future__ import annotations

import argparse

from ..method import keywords as kw
from ..pipeline.registry import MAX_SAMPLES, METHODS

__all__ = ["int_list", "window", "number", "float_list", "add_protect_arguments",
           "add_weight_arguments", "add_runtime_arguments", "add_seed_argument",
           "add_device_argument", "protect_options", "check_weight_arguments",
           "build_pipeline", "LIMITS_NOTE"]

#: The limits every photo, video and dataset item meets, for --help (the numbers are the
#: library's: image.io.DEFAULT_MAX_PIXELS, LReOrgPipeline(max_faces=64),
#: dataset.cells.MAX_ITEM_BYTES, image.video.VideoLimits; tests/test_untouched.py and
#: tests/test_cli_video.py keep them equal). Each has its own message.
LIMITS_NOTE = ("Limits: a photo has at most 50 megapixels (50,000,000 pixels; a larger one is "
               "refused: downscale it) and at most --max-faces faces to regenerate (default "
               "64; a photo with more is refused: choose faces or raise the limit); a dataset "
               "item (an image cell, or the file it or a folder item names) holds at most "
               "160 MiB (a video streams through and has no byte limit); a video's frames "
               "have sides of 16 to 8,192 pixels and at most 9,437,184 pixels each (4096 x "
               "2304), at a rate of at most 480 frames per second.")


def int_list(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def window(text: str) -> tuple[int, int]:
    values = int_list(text)
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected A,B (two integers), got {text!r}")
    return values[0], values[1]


def number(text: str) -> float:
    """A float that may be 'inf' (ε = ∞); NaN and other text are refused here."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    return value


def float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers (inf allowed), "
                                         f"got {text!r}")


def add_protect_arguments(p: argparse.ArgumentParser, *, method_default: str | None,
                          seed: bool = True, faces: bool = True) -> None:
    """What is done to each face: ``ProtectOptions``' fields as flags."""
    g = p.add_argument_group("protection (every value is checked before any input is read)")
    g.add_argument("--method", default=method_default, choices=list(METHODS),
                   help="lreorg (default with a bundle); style-mix (training-free baseline, "
                        "needs only the backbone); a latent baseline (laplace, k-anonymity); "
                        "or an image baseline (blur, pixelate, mask). Options that do not apply "
                        "to the method are an error.")
    g.add_argument("--anonymize", default=None,
                   help=f"keywords to anonymize, comma-separated (default: "
                        f"{','.join(kw.DEFAULT_ANONYMIZE)})")
    g.add_argument("--recover", default=None,
                   help=f"keywords to recover, comma-separated (default for lreorg: "
                        f"{','.join(kw.DEFAULT_RECOVER)}; '' for none)")
    g.add_argument("--epsilon", type=number,
                   help="privacy budget ε >= 0 per draw, 'inf' allowed (no DP guarantee then); "
                        "default: the bundle's")
    g.add_argument("--rank-window", type=window, metavar="A,B",
                   help="GIA rank window, 1 <= A <= B <= groups (default: the bundle's)")
    g.add_argument("--mechanism", default=None, choices=["window", "strict"],
                   help="GIA mode: the paper's window (default) or strict ε-LDP over all groups")
    g.add_argument("--samples", type=int, help=f"diverse samples per face, 1..{MAX_SAMPLES} "
                                               f"(k samples spend k·ε; default 1)")
    if seed:
        g.add_argument("--seed", type=int,
                       help="seed 0..2**64-1 for reproducible output. Default: OS entropy, "
                            "which is not recorded anywhere (the ε-DP guarantee needs secret "
                            "coins). A seed you give is written to each JSON with a warning: "
                            "do not publish it with the outputs")
    g.add_argument("--strength", type=number,
                   help="image baseline strength in (0, 1]: blur σ and pixelate block as a "
                        "fraction of the face size, mask opacity")
    g.add_argument("--style-rows", type=window, metavar="R0,R1",
                   help="style-mix: W+ rows [R0, R1) to replace (default: the middle rows)")
    g.add_argument("--aligned", action="store_true",
                   help="inputs are already aligned face crops: no detection, no paste-back")
    if faces:
        g.add_argument("--faces", type=int_list, metavar="I,J",
                       help="which detected faces (left to right, from 0); default all")
    g.add_argument("--small-faces", default=None, choices=["blur", "mask", "keep"],
                   help="faces found but smaller than --min-face-size (too small to "
                        "regenerate): blur (default), mask, or keep them as they are")


def add_weight_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("weights")
    g.add_argument("--bundle", help="LReOrg bundle: Hub repo id or local folder")
    g.add_argument("--revision", help="Hub revision of the bundle")
    g.add_argument("--backbone", help="local e4e / rosinality checkpoint (default: the "
                                      "bundle's configured Hub file; LREORG_BACKBONE_PATH)")
    g.add_argument("--style-mix", metavar="DIR",
                   help="fitted style-mix groups (`lreorg fit-style-mix`), for --method "
                        "style-mix")


def add_seed_argument(p, what: str = "the draws") -> None:
    """--seed for commands whose randomness defaults to OS entropy (never recorded)."""
    p.add_argument("--seed", type=int,
                   help=f"seed 0..2**64-1 of {what}, for reproducible results; default: OS "
                        f"entropy, which is not recorded anywhere")


def add_device_argument(p, default: str | None = "auto") -> None:
    p.add_argument("--device", default=default,
                   help="auto (cuda if available), cpu, cuda, cuda:N (resolved by "
                        "lreorg_hub.pipeline.devices)")


def add_runtime_arguments(p: argparse.ArgumentParser, *, dtype: bool = False) -> None:
    g = p.add_argument_group("where and how it runs")
    add_device_argument(g)
    if dtype:
        g.add_argument("--dtype", default="float32",
                       choices=["float32", "bfloat16", "float16"], help="backbone precision")
    g.add_argument("--output-size", type=int, help="generator resolution to stop at, a power "
                                                   "of two (e.g. 256 for a fast preview)")
    g.add_argument("--min-face-size", type=int, default=20,
                   help="smallest face regenerated, in pixels (1..10000); smaller faces the "
                        "detector finds (down to 12 px) are covered (--small-faces). A "
                        "detector can miss faces (profiles, occlusion, blur, faces below "
                        "12 px): see the README")
    g.add_argument("--max-faces", type=int, default=64, metavar="N",
                   help="most faces to regenerate in one photo (1..4096, default 64); a photo "
                        "with more is refused with its own message")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def protect_options(args: argparse.Namespace):
    """The flags as the library's one options type (not yet validated)."""
    from ..pipeline.options import ProtectOptions

    return ProtectOptions(
        method=args.method, anonymize=args.anonymize, recover=args.recover,
        epsilon=args.epsilon, rank_window=args.rank_window, mechanism=args.mechanism,
        seed=getattr(args, "seed", None), samples=args.samples, strength=args.strength,
        style_rows=args.style_rows, aligned=args.aligned, faces=getattr(args, "faces", None),
        small_faces=args.small_faces)


def check_weight_arguments(args: argparse.Namespace, method: str | None) -> None:
    """The weight flags fit the method (before anything is loaded)."""
    needs = METHODS[method].needs if method is not None else (
        "bundle" if args.bundle else "backbone" if args.style_mix else "nothing")
    if method is None and needs == "nothing":
        raise ValueError("give --bundle (LReOrg), --style-mix with a backbone (style-mix), or "
                         "--method blur / pixelate / mask")
    weights = {"--bundle": args.bundle, "--revision": args.revision,
               "--backbone": args.backbone, "--style-mix": args.style_mix,
               "--output-size": args.output_size}
    applies = {"bundle": ("--bundle", "--revision", "--backbone", "--output-size"),
               "backbone": ("--backbone", "--style-mix", "--output-size"),
               "nothing": ()}[needs]
    extra = [flag for flag, value in weights.items() if value is not None and flag not in applies]
    if extra:
        raise ValueError(f"{', '.join(extra)} {'does' if len(extra) == 1 else 'do'} not apply "
                         f"to --method {method}")
    if needs == "bundle" and not args.bundle:
        raise ValueError(f"--bundle (Hub repo id or folder) is required for method "
                         f"{method!r}; style-mix needs only --backbone and --style-mix, the "
                         f"image baselines blur / pixelate / mask need none")
    if needs == "backbone" and not args.style_mix:
        raise ValueError("--method style-mix needs --style-mix (fitted groups: `lreorg "
                         "fit-style-mix`) and a backbone (--backbone, LREORG_BACKBONE_PATH or "
                         "the default Hub file)")


def build_pipeline(args: argparse.Namespace, **settings):
    """The pipeline the flags describe (image baselines only when no weights are given)."""
    from ..pipeline import LReOrgPipeline

    common = dict(device=args.device, min_face_size=args.min_face_size, **settings)
    if getattr(args, "max_faces", None) is not None:  # `eval` has no --max-faces: the default
        common["max_faces"] = args.max_faces
    if not (args.bundle or args.style_mix):
        return LReOrgPipeline(**common)
    return LReOrgPipeline.from_pretrained(
        args.bundle, backbone=args.backbone, revision=args.revision, style_mix=args.style_mix,
        output_size=args.output_size, **common)
