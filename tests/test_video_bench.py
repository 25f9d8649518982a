"""`lreorg bench video` keeps running (a tiny clip; the numbers are not asserted, except the
repeated photo's identical frames)."""

import json
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow   # builds the demo weights; test_video.py covers the identical frames
def test_video_benchmark_writes_its_table_and_json(tmp_path, capsys):
    main = runpy.run_path(str(ROOT / "benchmarks" / "bench_video.py"))["main"]
    out = tmp_path / "v.json"
    assert main(["--frames", "6", "--size", "160x120", "--methods", "lreorg", "--scenes",
                 "still", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {r["draw"]: r for r in report["rows"]}
    assert rows["per-track"]["max_frame_difference"] == 0       # one photo, one identity
    assert rows["per-frame"]["max_frame_difference"] > 0        # the ablation flickers
    assert "RANDOM weights" in report["identity_encoder"]
    assert "TL-ID" in capsys.readouterr().out
