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


def test_dataset_benchmark_writes_its_table_and_json(tmp_path, capsys):
    main = runpy.run_path(str(ROOT / "benchmarks" / "bench_dataset.py"))["main"]
    out = tmp_path / "d.json"
    assert main(["--items", "4", "--batch-sizes", "1,2", "--dtypes", "float32",
                 "--engines", "local", "--engine-items", "6", "--engine-batch", "4",
                 "--repeats", "1", "--no-detection", "--threads", "1",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {(r["dtype"], r["batch_size"], r["modconv"]) for r in report["rows"]} == {
        ("float32", 1, "auto"), ("float32", 2, "grouped"), ("float32", 2, "shared")}
    assert all(r["faces_per_s"] > 0 for r in report["rows"])
    assert report["engines"][0]["engine"] == "local" and report["engines"][0]["items"] == 6
    assert set(report["half_precision_max_image_diff"]) == {"bfloat16", "float16"}
    half = report["half_precision_lreorg"]
    assert set(half) == {"bfloat16", "float16"}
    assert 0 < half["float16"]["cdfnet_round_trip_rel"] < half["bfloat16"]["cdfnet_round_trip_rel"]
    assert [(r["dtype"], r["output_size"]) for r in report["latency"]] == [("float32", 64)]
    assert report["latency"][0]["ms_median"] > 0
    if report["device"] == "cpu":
        assert all(g["status"].startswith("not measured") for g in report["gpu"])
    assert "faces/s" in capsys.readouterr().out
