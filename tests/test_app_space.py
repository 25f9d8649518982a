"""The Space folder: valid front matter (parsed by huggingface_hub's own card classes), its own
requirements, and one command that writes exactly what the Space needs."""

import ast
import runpy
import subprocess
import sys
from pathlib import Path

import gradio
import pytest
from huggingface_hub import SpaceCard, SpaceHardware

ROOT = Path(__file__).resolve().parents[1]
# Import name → requirement name, for what the Space installs (gradio comes with the SDK).
DISTRIBUTIONS = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy",
                 "PIL": "pillow", "huggingface_hub": "huggingface_hub", "jinja2": "jinja2",
                 "safetensors": "safetensors", "open_clip": "open_clip_torch",
                 "facenet_pytorch": "facenet-pytorch", "tqdm": "tqdm", "requests": "requests",
                 "spaces": "spaces",
                 "torchmetrics": "torchmetrics", "matplotlib": "matplotlib"}
ZEROGPU_TORCH = ("2.8.0", "2.9.1", "2.10.0", "2.11.0")
NOT_IN_SPACE = runpy.run_path(str(ROOT / "scripts" / "build_space.py"))["NOT_IN_SPACE"]


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    out = tmp_path_factory.mktemp("space") / "upload"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_space.py"), str(out)],
                          capture_output=True, text=True, check=True)
    assert "hf upload" in done.stdout
    return out


def _requirements(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name = line.split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip()
            pins[name.lower()] = line
    return pins


def test_front_matter_parses_with_the_hub_card_classes(space):
    from lreorg_hub.backbones import BackboneSource

    card = SpaceCard.load(space / "README.md")
    data = card.data.to_dict()
    assert data["sdk"] == "gradio" and data["sdk_version"] == gradio.__version__
    assert data["python_version"] == "3.12"  # a string: unquoted 3.10 would be the float 3.1
    assert (space / data["app_file"]).is_file()
    assert data["suggested_hardware"] in {h.value for h in SpaceHardware}
    assert data["license"] == "mit" and 0 < len(data["short_description"]) <= 60
    backbone = BackboneSource()
    assert backbone.repo_id in data["models"]
    assert f"{backbone.repo_id} {backbone.filename}" in data["preload_from_hub"]
    assert "training-free baseline" in card.text


def test_space_requirements_are_separate_and_zerogpu_ready(space):
    pins = _requirements(space / "requirements.txt")
    assert "gradio" not in pins  # preinstalled at sdk_version
    assert pins["torch"].split("==")[1] in ZEROGPU_TORCH
    assert pins["facenet-pytorch"] == "facenet-pytorch==2.5.3"  # no torch/numpy pins
    assert "spaces" in pins
    dev = _requirements(ROOT / "requirements.txt")
    assert dev["torch"] != pins["torch"]  # the development pins are not what the Space gets


def test_folder_holds_what_the_space_imports_and_nothing_else(space):
    files = {p.relative_to(space).as_posix() for p in space.rglob("*") if p.is_file()}
    for needed in ("README.md", "requirements.txt", "app.py", "lreorg_hub/__init__.py",
                   "lreorg_hub/serving/__init__.py", "lreorg_hub/backbones/__init__.py",
                   "model_cards/lreorg.md", "examples/astronaut.jpg"):
        assert needed in files
    assert not any("__pycache__" in f or f.startswith(("tests/", ".venv")) for f in files)
    assert not any(f.startswith(NOT_IN_SPACE) for f in files)  # evaluation, dataset: unused
    source = {p.relative_to(ROOT / "lreorg_hub").as_posix()
              for p in (ROOT / "lreorg_hub").rglob("*.py")
              if not p.relative_to(ROOT).as_posix().startswith(NOT_IN_SPACE)}
    assert {f[len("lreorg_hub/"):] for f in files if f.startswith("lreorg_hub/")} == source
    # every third-party module the Space's code imports is in its requirements (or Gradio)
    pins = _requirements(space / "requirements.txt")
    imported = set()
    for path in [space / "app.py", *(space / "lreorg_hub").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"lreorg_hub", "gradio"}
    missing = [m for m in third_party if DISTRIBUTIONS.get(m, m).lower() not in pins]
    assert missing == []


def test_the_folder_imports_on_its_own(space):
    done = subprocess.run([sys.executable, "-c", "import app, lreorg_hub; "
                           "print(lreorg_hub.__file__); print(callable(app.main))"],
                          cwd=space, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    where, main = done.stdout.split()[-2:]
    assert Path(where).is_relative_to(space) and main == "True"


#: The first line of the license text each card id stands for.
LICENSE_TEXTS = {"mit": "MIT License"}


def test_it_ships_the_license_its_card_names(space):
    card = SpaceCard.load(space / "README.md").data.to_dict()
    text = (space / "LICENSE").read_text()
    assert text.splitlines()[0] == LICENSE_TEXTS[card["license"]]
    assert text == (ROOT / "LICENSE").read_text()
    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text()


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_every_shipped_import_of_the_package_resolves_inside_the_folder(space):
    """Static: every `import lreorg_hub...` and relative import, at module level or inside a
    function, names a module or package that the folder holds."""
    def exists(module: str) -> bool:
        path = space / Path(*module.split("."))
        return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()

    unresolved = []
    for path in [space / "app.py", *sorted((space / "lreorg_hub").rglob("*.py"))]:
        module = _module_name(path, space)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1]
                                    + ([node.module] if node.module else []))
                names = [base]  # `from base import x`: base must be there (x may be a name)
            else:
                continue
            unresolved += [f"{module}:{node.lineno} {n}" for n in names
                           if n.split(".")[0] == "lreorg_hub" and not exists(n)]
    assert unresolved == []


IMPORT_EVERY_MODULE = r'''
import importlib, pkgutil, sys

allowed = set(sys.argv[1].split(",")) | set(sys.stdlib_module_names)
space = sys.argv[2]

class OnlyTheRequirements:
    """Refuse a third-party module that the Space's own code imports directly unless its
    requirements provide it (what the installed packages import in turn is theirs)."""
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in allowed or "." in name:
            return None
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename.startswith("<frozen"):
            frame = frame.f_back
        if frame is not None and frame.f_code.co_filename.startswith(space):
            raise ImportError(f"{top} is not in the Space's requirements")
        return None

sys.meta_path.insert(0, OnlyTheRequirements())
import app, lreorg_hub
failed = []
for info in pkgutil.walk_packages(lreorg_hub.__path__, "lreorg_hub."):
    try:
        importlib.import_module(info.name)
    except Exception as exc:
        failed.append(f"{info.name}: {type(exc).__name__}: {exc}")
print("\n".join(failed) or "all imported")
'''


def test_every_shipped_module_imports_with_only_the_spaces_requirements(space):
    pins = _requirements(space / "requirements.txt")
    allowed = {name for name, dist in DISTRIBUTIONS.items() if dist.lower() in pins}
    allowed |= {"lreorg_hub", "gradio", "app"}
    done = subprocess.run([sys.executable, "-c", IMPORT_EVERY_MODULE, ",".join(sorted(allowed)),
                           str(space)], cwd=space, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "all imported", done.stdout[-3000:]
