"""The folder tree is the architecture (docs/ARCHITECTURE.md): every import points down a
layer or stays inside its own package, there is no import circle, heavy third-party
packages stay where they belong, and no module outgrows one job."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lreorg_hub"

#: Each top-level part of lreorg_hub and its layer (0 = bottom). A module may import from a
#: lower layer, from its own part, and from the same-layer parts listed in PEERS.
LAYERS = {"privacy": 0, "reachability": 0,
          "method": 1,
          "image": 2, "scorers": 2, "backbones": 2, "bundle": 2,
          "pipeline": 3, "demo": 3, "demo_clips": 3,
          "serving": 4, "dataset": 4, "training": 4, "evaluation": 4,
          "cli": 5}
PEERS = {("scorers", "image")}  # the scorers take PIL images through image.io

#: Third-party packages only these parts may import (everything else: nowhere).
CONFINED = {"gradio": set(), "ray": {"dataset"}, "accelerate": {"training"},
            "matplotlib": {"evaluation"}, "torchmetrics": {"evaluation"},
            "open_clip": {"scorers"}, "facenet_pytorch": {"scorers", "image"}}
#: The latent method never touches files, pixels or the Hub.
NOT_IN_METHOD = {"PIL", "huggingface_hub", "safetensors", "numpy", "gradio"}

#: Modules allowed to be long: the two backbone networks (one architecture each).
LONG_MODULES = {"lreorg_hub/backbones/stylegan2.py", "lreorg_hub/backbones/e4e.py"}
MAX_LINES = 420


def _modules() -> dict[str, Path]:
    mods = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = f
    return mods


def _imports(name: str, path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported module, is-ours) for every import, at any depth (lazy ones count)."""
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
                found.append((node.lineno, max((t for t in targets if t in MODULES),
                                               key=len, default=base), True))
            else:
                found.append((node.lineno, node.module, node.module.startswith("lreorg_hub")))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, a.name.startswith("lreorg_hub"))
                      for a in node.names]
    return found


MODULES = _modules()


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_every_import_points_down_or_stays_home():
    wrong = []
    for name, path in MODULES.items():
        here = _part(name)
        if not here:
            continue  # lreorg_hub/__init__.py: lazy names for users, imports nothing
        for line, target, ours in _imports(name, path):
            there = _part(target) if ours else None
            if not ours or not there or there == here:
                continue
            if LAYERS[there] < LAYERS[here] or (here, there) in PEERS:
                continue
            wrong.append(f"{path.relative_to(ROOT)}:{line} ({here}, layer {LAYERS[here]}) "
                         f"imports {target} ({there}, layer {LAYERS[there]})")
    assert wrong == []


def test_every_part_has_a_layer_and_says_what_it_may_import():
    parts = {_part(n) for n in MODULES if _part(n)}
    assert parts == set(LAYERS)
    for part in parts:
        init = PACKAGE / part / "__init__.py"
        if init.is_file():
            doc = ast.get_docstring(ast.parse(init.read_text())) or ""
            assert "May import" in doc or "may import" in doc, part


def test_no_import_circle():
    graph = {name: {t for _, t, ours in _imports(name, path) if ours and t in MODULES
                    and t != name} for name, path in MODULES.items()}
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join(
                    trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    sys.setrecursionlimit(10_000)
    for name in graph:
        if name not in state:
            visit(name, [name])


def test_heavy_packages_stay_where_they_belong():
    wrong = []
    for name, path in MODULES.items():
        part = _part(name)
        for line, target, ours in _imports(name, path):
            top = target.split(".")[0]
            if ours:
                continue
            if top in CONFINED and part not in CONFINED[top]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {top}")
            if part in ("method", "privacy") and top in NOT_IN_METHOD:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {top}")
    assert wrong == []


def test_modules_keep_to_one_job():
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert set(long) <= LONG_MODULES, long
