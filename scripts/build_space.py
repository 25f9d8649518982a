"""Write the exact folder to upload as the Hugging Face Space.

    python scripts/build_space.py build/space          # then:
    hf upload ORG/SPACE_NAME build/space --repo-type space

The folder holds the Space card (space/README.md, front matter included), the license its
card names (LICENSE), the Space's own requirements (space/requirements.txt: no gradio pin, a
ZeroGPU-supported torch), app.py, the lreorg_hub package without the parts the app never
imports, the model-card template and the example photos. Nothing else: no tests, no caches,
no virtual environment. An existing OUT folder is replaced.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".DS_Store")
#: What the app never imports: evaluation and dataset runs (leaving them out keeps their heavy
#: requirements, torchmetrics, Ray, pyarrow, datasets, off the Space) and the command line,
#: whose sub-commands import them; every module shipped must import in the Space.
NOT_IN_SPACE = ("lreorg_hub/evaluation", "lreorg_hub/dataset", "lreorg_hub/cli")

#: (source relative to the repository, destination relative to the Space root)
CONTENTS = [
    ("space/README.md", "README.md"),
    ("space/requirements.txt", "requirements.txt"),
    ("LICENSE", "LICENSE"),
    ("app.py", "app.py"),
    ("lreorg_hub", "lreorg_hub"),
    ("model_cards", "model_cards"),
    ("examples", "examples"),
]


def build(out: Path) -> list[Path]:
    """Write the Space folder at ``out``; returns the files written, sorted."""
    out = Path(out)
    if out.resolve() in (ROOT, *ROOT.parents):
        raise SystemExit(f"refusing to replace {out}: it contains the repository")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for source, destination in CONTENTS:
        src, dst = ROOT / source, out / destination
        if src.is_dir():
            shutil.copytree(src, dst, ignore=IGNORE)
            for skipped in NOT_IN_SPACE:
                if skipped.startswith(source + "/"):
                    shutil.rmtree(out / destination / skipped[len(source) + 1:])
        else:
            shutil.copy2(src, dst)
    return sorted(p for p in out.rglob("*") if p.is_file())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write (replaced if it exists)")
    args = parser.parse_args(argv)
    files = build(args.out)
    print(f"wrote {len(files)} files to {args.out}; upload with:\n"
          f"  hf upload ORG/SPACE_NAME {args.out} --repo-type space")
    return 0


if __name__ == "__main__":
    sys.exit(main())
