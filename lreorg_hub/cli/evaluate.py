"""`lreorg eval`: every method on a folder of face photos (PSR, detection, APR, FID)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..method import keywords as kw
from ..scorers.defaults import DEFAULT_APR_CLIP
from .args import (add_runtime_arguments, add_seed_argument, add_weight_arguments,
                   build_pipeline, float_list, number, window)


def _bundle_record(args: argparse.Namespace) -> dict:
    """{"source", "sha256"} of the evaluated bundle's model.safetensors ({} for none)."""
    from ..bundle.digests import sha256_file

    if not args.bundle:
        return {}
    if Path(args.bundle).is_dir():
        return {"source": str(args.bundle),
                "sha256": sha256_file(Path(args.bundle) / "model.safetensors")}
    from huggingface_hub import hf_hub_download  # the copy the pipeline just loaded

    path = hf_hub_download(args.bundle, "model.safetensors", revision=args.revision,
                           local_files_only=True)
    return {"source": f"{args.bundle}@{args.revision or 'main'}", "sha256": sha256_file(path)}


def _cmd_eval(args: argparse.Namespace) -> int:
    from ..scorers import FFHQ_FACE_CROP, IdentityEncoder, KeywordEncoder
    from ..evaluation import ClipImageFeatures, EvalConfig, Evaluator, InceptionFeatures
    from ..training.build import seeded_init
    from ..training.provenance import describe_scorer

    methods = [m.strip() for m in (args.methods or "").split(",") if m.strip()]
    config = EvalConfig(
        methods=methods or None,
        anonymize=args.anonymize, recover=args.recover, epsilon=args.epsilon,
        mechanism=args.mechanism, rank_window=list(args.rank_window) if args.rank_window else None,
        epsilons=args.epsilons, attributes=args.attributes,
        recovery_keywords=args.recovery_keywords, threshold=args.threshold, seed=args.seed,
        judge=f"facenet {Path(args.judge).name}",
        dataset={"name": args.dataset_name or Path(args.photos).resolve().name,
                 "type": args.dataset_id or "custom", "split": args.dataset_split})
    # Scorers first: a missing weight file should fail before any photo is touched. Built
    # with a fixed seed, so random-weight scorers (tests) give the same numbers on resume.
    judge = seeded_init(IdentityEncoder, pretrained=None if args.judge == "none" else args.judge,
                        crop=FFHQ_FACE_CROP)
    clip_cfg = json.loads(Path(args.clip_config).read_text()) if args.clip_config else None
    clip = seeded_init(KeywordEncoder, model_name=args.clip_model, model_cfg=clip_cfg,
                       pretrained=None if args.clip_pretrained == "none"
                       else args.clip_pretrained)
    features = (ClipImageFeatures(clip) if args.fid_features == "clip"
                else InceptionFeatures(weights_path=args.fid_weights))
    pipe = build_pipeline(args)  # the image baselines need no weights
    trained_with = getattr(pipe.model, "text_encoder", None) or {}
    if (trained_with.get("model_name"), trained_with.get("pretrained")) == \
            (clip.model_name, clip.pretrained):
        print(f"lreorg eval: warning: APR is judged by {clip.model_name} / {clip.pretrained}, "
              f"the CLIP the bundle's keyword conditions (and L_s) came from; choose another "
              f"with --clip-model / --clip-pretrained", file=sys.stderr)
    config.provenance = {"bundle": _bundle_record(args), "judge": describe_scorer(judge),
                         "apr_clip": describe_scorer(clip)}
    judge.to(pipe.device)
    clip.to(pipe.device)
    if isinstance(features, InceptionFeatures):
        features.to(pipe.device)
    evaluator = Evaluator(pipe, judge, clip, features, config)
    results = evaluator.run(args.photos, args.out, progress=not args.quiet, restart=args.restart)
    out = Path(args.out)
    print((out / "results.md").read_text())
    if not args.quiet:
        print(f"wrote {out / 'results.json'}, {out / 'results.md'}, "
              f"{out / 'privacy_utility.png'} ({results['photos']['evaluated']} photo(s))",
              file=sys.stderr)
    for note in results.get("warnings") or []:
        print(f"lreorg eval: warning: {note}", file=sys.stderr)
    for failure in results["photos"]["failed"]:
        print(f"lreorg: skipped {failure['photo']}: {failure['error']}", file=sys.stderr)
    return 1 if results["photos"]["failed"] else 0


def register(sub) -> None:
    p = sub.add_parser(
        "eval", help="evaluate methods on a folder of face photos (PSR, detection, APR, FID)",
        description="Run LReOrg and every baseline on the photos under PHOTOS and judge the "
                    "outputs: PSR (a face recognizer, by default facenet's CASIA-WebFace model, "
                    "the one LReOrg is not trained against), detection rate (MTCNN), APR and "
                    "per-keyword recovery (CLIP zero-shot), FID, identity-similarity "
                    "distributions, and an ε sweep. Writes OUT/results.md (paper Tables 2-8 "
                    "layout), OUT/results.json, OUT/privacy_utility.png and OUT/records/ (one "
                    "record per photo, no pixels); rerunning with the same options resumes.")
    p.add_argument("photos", metavar="PHOTOS", help="folder of face photos (searched recursively)")
    p.add_argument("--out", required=True, help="output folder")
    add_weight_arguments(p)
    p.add_argument("--methods", help="comma-separated methods (default: every method that can "
                                     "run with what is loaded)")
    p.add_argument("--anonymize", default=",".join(kw.DEFAULT_ANONYMIZE),
                   help="keywords to anonymize (default: %(default)s)")
    p.add_argument("--recover", default=",".join(kw.DEFAULT_RECOVER),
                   help="keywords to recover (default: %(default)s)")
    p.add_argument("--epsilon", type=number, help="ε of the main table (default: the bundle's)")
    p.add_argument("--epsilons", type=float_list, default=[0.5, 1.0, 4.0, 16.0],
                   metavar="E1,E2", help="ε sweep for the privacy-utility plot (default: "
                                         "0.5,1,4,16; 'inf' allowed; '' for none)")
    p.add_argument("--mechanism", default="window", choices=["window", "strict"])
    p.add_argument("--rank-window", type=window, metavar="A,B")
    p.add_argument("--attributes", default=",".join(kw.DEFAULT_RECOVER),
                   help="keywords judged for APR (default: %(default)s)")
    p.add_argument("--recovery-keywords", default=",".join((kw.IDENTITY, *kw.DEFAULT_RECOVER)),
                   help="keywords of the recovery table (default: %(default)s)")
    p.add_argument("--judge", default="casia-webface",
                   help="face recognizer for PSR: casia-webface (default), vggface2 or a "
                        "state-dict file of facenet's InceptionResnetV1; 'none' = random "
                        "weights (tests and the offline demo only)")
    p.add_argument("--threshold", type=float, default=0.4,
                   help="judge's cosine-similarity match threshold (default: %(default)s)")
    p.add_argument("--clip-model", default=DEFAULT_APR_CLIP["model_name"],
                   help="open_clip model judging APR and recovery (default: %(default)s, not "
                        "the ViT-B-32 that training uses for L_s)")
    p.add_argument("--clip-pretrained", default=DEFAULT_APR_CLIP["pretrained"],
                   help="open_clip tag or checkpoint file for APR (default: %(default)s); "
                        "'none' = random weights (tests only)")
    p.add_argument("--clip-config", help="JSON file of open_clip model_cfg overrides")
    p.add_argument("--fid-features", default="inception", choices=["inception", "clip"],
                   help="FID feature network: torchmetrics' Inception (default) or CLIP")
    p.add_argument("--fid-weights", help="local torch-fidelity Inception weights (offline)")
    p.add_argument("--dataset-name", help="what the photos are, for the card's model-index "
                                          "(default: the folder's name)")
    p.add_argument("--dataset-id", help="Hub dataset id of the photos (default: custom)")
    p.add_argument("--dataset-split", help="the dataset split evaluated (e.g. test)")
    add_seed_argument(p, "the evaluation's draws (per photo and run)")
    p.add_argument("--restart", action="store_true", help="discard earlier records in OUT")
    add_runtime_arguments(p)
    p.set_defaults(func=_cmd_eval)
