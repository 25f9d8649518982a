"""`lreorg fit-anonymizers` (GIA and KAA of a bundle) and `lreorg fit-style-mix`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..method import keywords as kw
from .args import add_device_argument, add_seed_argument, window


def _cmd_fit_anonymizers(args: argparse.Namespace) -> int:
    import torch

    from ..bundle import LReOrg
    from ..training.build import resolve_backbone, resolve_device, seeded_init
    from ..training.fitting import fit_anonymizers
    from ..training.provenance import describe_backbone, describe_scorer
    from ..scorers import KeywordEncoder

    device = resolve_device(args.device)
    model = LReOrg.from_pretrained(args.bundle, revision=args.revision, map_location=device)
    out = Path(args.out) if args.out else Path(args.bundle)
    if not args.out and not Path(args.bundle).is_dir():
        raise ValueError("--out is required when the bundle is a Hub repo id")
    backbone, backbone_file, source = resolve_backbone(args.backbone, model.backbone)
    backbone.to(device)
    clip_args = {"model_name": model.text_encoder["model_name"],
                 "pretrained": model.text_encoder["pretrained"]}
    if args.clip_model:
        clip_args["model_name"] = args.clip_model
    if args.clip_pretrained:
        clip_args["pretrained"] = None if args.clip_pretrained == "none" else args.clip_pretrained
    if args.clip_config:
        clip_args["model_cfg"] = json.loads(Path(args.clip_config).read_text())
    clip = seeded_init(KeywordEncoder, device=device, **clip_args)
    report = fit_anonymizers(model, backbone.generator, clip, num_samples=args.samples,
                             keywords=kw.parse_list(args.keywords) or None, seed=args.seed,
                             iterations=args.iterations, batch_size=args.batch_size,
                             output_size=args.output_size, progress=not args.quiet)
    # What made the anonymizers (no OS-entropy seed: None when --seed was not given).
    fitted = report_keywords(model, args)
    labelled = any(k != kw.IDENTITY for k in fitted)  # only KAA labels faces with CLIP
    model.provenance = {**(model.provenance or {}), "fitting": {
        "seed": args.seed, "samples": args.samples, "keywords": fitted,
        "iterations": args.iterations, "backbone": describe_backbone(backbone, backbone_file,
                                                                     source),
        "clip": describe_scorer(clip) if labelled else None}}
    model.to(torch.device("cpu")).save_pretrained(out)
    (out / "fitting.json").write_text(json.dumps(report.to_dict(), indent=2))
    print(report.describe(), file=sys.stderr)
    print(json.dumps({"bundle": str(out), **report.to_dict()}, indent=2))
    return 0


def report_keywords(model, args) -> list[str]:
    return list(model.keywords) if not args.keywords else \
        [kw.get(k, model.keywords).name for k in kw.parse_list(args.keywords)]


def _cmd_fit_style_mix(args: argparse.Namespace) -> int:
    import torch

    from ..backbones import load_backbone
    from ..bundle import StyleMixAnonymizer

    rows = None if args.rows is None else list(args.rows)
    backbone = load_backbone(args.backbone)
    g = backbone.generator
    style_mix = StyleMixAnonymizer(args.groups, args.members, g.style_dim, g.n_latent,
                                   rows=rows, truncation=args.truncation)
    generator = None
    if args.seed is not None:
        generator = torch.Generator().manual_seed(args.seed)
    style_mix.fit(g, num_samples=args.samples, generator=generator)
    style_mix.save_pretrained(args.out)
    print(f"style-mix groups ({args.groups} groups, {args.members} members from {args.samples}"
          f" mapping-network samples, rows {list(style_mix.rows)}) written to {args.out}",
          file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "fit-anonymizers", help="fit GIA and KAA on synthetic faces from the mapping network",
        description="Sample latents from the generator's mapping network (never encoded "
                    "photos), cluster the identity key features into the bundle's m groups, "
                    "label each attribute keyword's sub-categories with CLIP zero-shot on "
                    "G(s), and store centres, members and sub-category means in the bundle. "
                    "Prints group sizes and label balance; writes fitting.json beside it.")
    p.add_argument("bundle", help="bundle folder (rewritten in place unless --out) or Hub id")
    p.add_argument("--out", help="write the fitted bundle here instead")
    p.add_argument("--revision", help="Hub revision of the bundle")
    p.add_argument("--backbone", help="local e4e / rosinality checkpoint (default: the "
                                      "bundle's configured Hub file; LREORG_BACKBONE_PATH)")
    p.add_argument("--samples", type=int, default=10_000, help="sampled faces (default "
                                                                "%(default)s)")
    p.add_argument("--keywords", help="comma-separated keywords to fit (default: all)")
    p.add_argument("--iterations", type=int, default=50, help="k-means iterations")
    p.add_argument("--batch-size", type=int, default=16, help="faces rendered at once")
    p.add_argument("--output-size", type=int, help="render CLIP's faces at this generator "
                                                   "block (faster, coarser)")
    p.add_argument("--clip-model", help="open_clip model (default: the bundle's)")
    p.add_argument("--clip-pretrained", help="open_clip tag or file; 'none' = random weights "
                                             "(tests only)")
    p.add_argument("--clip-config", help="JSON file of open_clip model_cfg overrides")
    add_seed_argument(p, "the sampling and k-means")
    add_device_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_fit_anonymizers)
    p = sub.add_parser(
        "fit-style-mix", help="fit the training-free style-mix groups on a backbone's generator",
        description="k-means groups of mapping-network samples (synthetic identities only) for "
                    "--method style-mix; writes config.json + model.safetensors + a card (README.md).")
    p.add_argument("out", help="output folder")
    p.add_argument("--backbone", help="e4e / rosinality checkpoint (default: "
                                      "LREORG_BACKBONE_PATH, else the default Hub file)")
    p.add_argument("--groups", type=int, default=64, help="number of groups m")
    p.add_argument("--members", type=int, default=1024, help="member bank size")
    p.add_argument("--samples", type=int, default=10_000, help="mapping-network samples")
    p.add_argument("--rows", type=window, metavar="R0,R1", help="default rows [R0, R1)")
    p.add_argument("--truncation", type=float, default=1.0, help="ψ of the samples (1 = none)")
    add_seed_argument(p, "the fit")
    p.set_defaults(func=_cmd_fit_style_mix)
