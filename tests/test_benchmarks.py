"""The benchmark scripts keep running (tiny configurations; the numbers are not asserted)."""

import json
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pipeline_benchmark_writes_its_table_and_json(tmp_path, capsys):
    main = runpy.run_path(str(ROOT / "benchmarks" / "bench_pipeline.py"))["main"]
    assert main(["--tiny", "--repeats", "1", "--out", str(tmp_path / "p.json")]) == 0
    report = json.loads((tmp_path / "p.json").read_text())
    assert set(report["rows"]) == {"1 face", "4 faces"}
    assert report["rows"]["4 faces"]["faces"] == 4
    assert set(report["rows"]["1 face"]["median_s"]) == {"detect", "align", "encode",
                                                         "reorganize", "generate", "paste"}
    assert "CDFNet+anon / enc+gen" in capsys.readouterr().out
