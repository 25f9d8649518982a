"""The training benchmark keeps running (tiny configuration, one row; numbers not asserted)."""

import json
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_training_benchmark_writes_its_table_and_json(tmp_path, capsys):
    main = runpy.run_path(str(ROOT / "benchmarks" / "bench_training.py"))["main"]
    assert main(["--tiny", "--steps", "1", "--batch-size", "1", "--rows",
                 "IOS 1024→256 (default)", "--out", str(tmp_path / "t.json")]) == 0
    report = json.loads((tmp_path / "t.json").read_text())
    row = report["rows"]["IOS 1024→256 (default)"]
    assert row["device"] == "cpu" and row["seconds_per_step"] > 0
    assert row["memory_kind"] == "process peak RSS" and row["peak_memory_mib"] > 0
    assert report["schedule_steps"] == 50_000
    assert row["schedule_hours"] == 50_000 * row["seconds_per_step"] / 3600
    assert "s/step" in capsys.readouterr().out
