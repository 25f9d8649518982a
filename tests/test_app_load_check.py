"""scripts/load_check.py: its help says everything, it writes its JSON where told, and it
removes its work folder."""

import json
import runpy
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def load_check():
    return runpy.run_path(str(ROOT / "scripts" / "load_check.py"))


def test_help_shows_the_whole_description_and_every_default(load_check, capsys):
    with pytest.raises(SystemExit) as done:
        load_check["parse_args"](["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    doc = load_check["__doc__"]
    for line in doc.strip().splitlines():  # as written, not re-wrapped
        assert line.strip() in text, line
    for option, default in (("--clients", 20), ("--requests", 2), ("--samples", 2),
                            ("--concurrency", 2), ("--result-seconds", 10)):
        assert option in text and f"(default: {default})" in text
    assert "app_load_check.json)" in text


@pytest.mark.parametrize("keep", [False, True])
def test_the_work_folder_is_removed_even_when_the_check_fails(load_check, tmp_path,
                                                               monkeypatch, keep):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen = []

    def failing_run(args, work, client, handle_file):
        (work / "photos").mkdir()
        seen.append(work)
        raise RuntimeError("app.py did not start")

    main = load_check["main"]
    main.__globals__["run"] = failing_run
    with pytest.raises(RuntimeError):
        main(["--json", str(tmp_path / "x.json")] + (["--keep-work"] if keep else []))
    assert seen[0].parent == tmp_path and seen[0].name.startswith("lreorg_load_")
    assert seen[0].exists() == keep


@pytest.mark.slow
def test_a_small_check_passes_and_writes_its_json_where_told(load_check, tmp_path,
                                                             monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    out = tmp_path / "reports" / "check.json"
    assert load_check["main"](["--clients", "2", "--requests", "1", "--samples", "1",
                               "--result-seconds", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["completed"] == 2 and report["failures"] == 0
    assert report["files_left_after_the_stated_time"] == 0
    assert report["files_left_after_sigterm"] == 0 and report["server_exit_code"] == 0
    assert list((tmp_path / "tmp").iterdir()) == []  # the work folder is gone
