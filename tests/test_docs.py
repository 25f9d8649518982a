"""The docs stay true: the README quickstart runs, METHOD.md names only real code and tests."""

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_quickstart_runs():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- quickstart: tests/test_docs.py runs this block -->")[1]
    code = block.split("```python\n")[1].split("```")[0]
    assert len(code.strip().splitlines()) <= 13
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out.splitlines()[0] == "torch.Size([3, 2, 18, 512])"
    assert "'mechanism': 'window'" in out and "'seed': 0" in out


def _resolve(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def test_method_map_names_real_functions_and_tests():
    text = (ROOT / "docs" / "METHOD.md").read_text()
    symbols = set(re.findall(r"`(lreorg_hub\.[\w.]+)`", text))
    tests = set(re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text))
    assert len(symbols) > 20 and len(tests) > 20
    for dotted in symbols:
        assert _resolve(dotted) is not None, dotted
    for path, name in tests:
        source = (ROOT / path).read_text()
        assert re.search(rf"^def {name}\(", source, re.M), f"{path}::{name}"


def test_readme_gives_one_setup_and_one_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/setup.sh" in readme and "bash scripts/setup.sh" in ci
    assert ".venv/bin/python -m pytest\n" in readme and ".venv/bin/python -m pytest\n" in ci


@pytest.mark.parametrize("args, expected", [(["keywords"], "hair color  blond, black"),
                                            (["--version"], "lreorg-hub ")])
def test_cli_runs(args, expected):
    out = subprocess.run([sys.executable, "-m", "lreorg_hub.cli", *args], capture_output=True,
                         text=True, check=True).stdout
    assert expected in out
