"""The app's flags and the environment variables that set their defaults (flags win): which
weights run (decided once at start) and how the app serves (limits, what is kept of a photo
and for how long, queue, address). ``app.py`` parses them; nothing here imports Gradio."""

from __future__ import annotations

import argparse
import os

from .files import FileRules
from .runtime import ServingConfig

__all__ = ["parse_args", "serving_config", "file_rules", "ENV_BACKBONE_HUB"]

DEFAULTS = FileRules()

# The environment variables behind the flags.
ENV_DEMO = "LREORG_DEMO"
ENV_BUNDLE, ENV_BUNDLE_REVISION = "LREORG_BUNDLE", "LREORG_BUNDLE_REVISION"
ENV_BACKBONE_PATH = "LREORG_BACKBONE_PATH"
ENV_BACKBONE_HUB = {"repo": "LREORG_BACKBONE_REPO", "file": "LREORG_BACKBONE_FILE",
                    "revision": "LREORG_BACKBONE_REVISION"}
ENV_IDENTITY = "LREORG_IDENTITY_WEIGHTS"


def _truthy(value: str | None) -> bool:
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def parse_args(argv=None, environ=None) -> argparse.Namespace:
    env = os.environ if environ is None else environ
    p = argparse.ArgumentParser(description="LReOrg face anonymization app (Gradio).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    w = p.add_argument_group("weights (decided once at start)")
    w.add_argument("--demo", action="store_true", default=_truthy(env.get(ENV_DEMO)),
                   help=f"small random-weight backbone and bundle, offline (env {ENV_DEMO}=1)")
    w.add_argument("--bundle", default=env.get(ENV_BUNDLE),
                   help=f"LReOrg bundle: Hub repo id or folder (env {ENV_BUNDLE})")
    w.add_argument("--bundle-revision", default=env.get(ENV_BUNDLE_REVISION))
    w.add_argument("--backbone", default=env.get(ENV_BACKBONE_PATH),
                   help="local e4e / rosinality checkpoint (env LREORG_BACKBONE_PATH); default:"
                        " the bundle's configured Hub file")
    for name, var in ENV_BACKBONE_HUB.items():
        w.add_argument(f"--backbone-{name}", default=env.get(var),
                       help=f"Hub {name} of the backbone checkpoint (env {var})")
    w.add_argument("--style-mix", default=env.get("LREORG_STYLE_MIX"),
                   help="folder / Hub repo of fitted style-mix groups (env LREORG_STYLE_MIX); "
                        "default: fitted at start on the backbone's mapping network")
    w.add_argument("--identity-weights", default=env.get(ENV_IDENTITY, "vggface2"),
                   help="facenet weights for the identity similarity: 'vggface2' or a file "
                        f"(env {ENV_IDENTITY})")
    w.add_argument("--no-identity", action="store_true", help="skip the identity similarity")
    r = p.add_argument_group("serving")
    r.add_argument("--device", default=env.get("LREORG_DEVICE", "auto"))
    r.add_argument("--output-size", type=int, default=_int(env.get("LREORG_OUTPUT_SIZE")),
                   help="stop the generator at this resolution (faster previews)")
    r.add_argument("--max-pixels", type=int,
                   default=_int(env.get("LREORG_MAX_PIXELS")) or 25_000_000)
    r.add_argument("--max-file-size", default=env.get("LREORG_MAX_FILE_SIZE", "20mb"))
    r.add_argument("--result-seconds", type=float,
                   default=_int(env.get("LREORG_RESULT_SECONDS")) or DEFAULTS.result_s,
                   help="result images are deleted this long after they are made")
    r.add_argument("--upload-seconds", type=float,
                   default=_int(env.get("LREORG_UPLOAD_SECONDS")) or DEFAULTS.unused_upload_s,
                   help="an upload no run has read is deleted after this long (a used one at "
                        "once); keep it above the longest wait in the queue")
    r.add_argument("--memory-seconds", type=float,
                   default=_int(env.get("LREORG_MEMORY_SECONDS")) or DEFAULTS.memory_s,
                   help="a visitor's photo stays in memory (never on disk) this long after "
                        "their last run, so other settings need no new upload")
    r.add_argument("--concurrency", type=int, default=_int(env.get("LREORG_CONCURRENCY")) or 1)
    r.add_argument("--queue-size", type=int, default=_int(env.get("LREORG_QUEUE_SIZE")) or 32)
    r.add_argument("--host", default=None, help="default: GRADIO_SERVER_NAME or 127.0.0.1")
    r.add_argument("--port", type=int, default=None, help="default: GRADIO_SERVER_PORT or 7860")
    return p.parse_args(argv)


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None


def serving_config(args: argparse.Namespace) -> ServingConfig:
    return ServingConfig(
        bundle=args.bundle, bundle_revision=args.bundle_revision, backbone=args.backbone,
        style_mix=args.style_mix,
        demo=args.demo, identity_weights=None if args.no_identity else args.identity_weights,
        device=args.device, output_size=args.output_size, max_pixels=args.max_pixels)


def file_rules(args: argparse.Namespace) -> FileRules:
    return FileRules(result_s=args.result_seconds, unused_upload_s=args.upload_seconds,
                        memory_s=args.memory_seconds)
