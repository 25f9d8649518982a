"""Load check of the app: N concurrent gradio_client clients on loopback against ``python
app.py --demo``; prints a table and writes JSON.

    .venv/bin/python scripts/load_check.py [--clients 20] [--requests 2] [--samples 2]

Reports latency p50 / p95 / max, failures (must be 0), the server's peak resident memory, and
the upload / result files left in Gradio's temporary folder (1) while the server runs, once
its purge interval has passed, and (2) after a clean shutdown (both must be 0; the example
photo's own cached copy is not an upload and is not counted).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from app_server import AppServer  # noqa: E402  (the same launcher the app tests use)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def client_photos(folder: Path, count: int) -> list[Path]:
    """One distinct photo per client (a visitor's own upload), from the example photo."""
    base = np.asarray(Image.open(ROOT / "examples" / "astronaut.jpg").convert("RGB"), np.int16)
    paths = []
    for i in range(count):
        shifted = np.clip(base + (i - count // 2), 0, 255).astype(np.uint8)
        image = Image.fromarray(shifted)
        if i % 2:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        path = folder / f"visitor_{i:02d}.png"
        image.save(path)
        paths.append(path)
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--requests", type=int, default=2, help="requests per client")
    p.add_argument("--samples", type=int, default=2, help="diverse samples per request")
    p.add_argument("--concurrency", type=int, default=2, help="the app's --concurrency")
    p.add_argument("--cache-seconds", type=int, default=40,
                   help="the app's --cache-seconds (longer than any wait in the queue)")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" /
                   "app_load_check.json")
    args = p.parse_args(argv)

    from gradio_client import Client, handle_file

    work = Path(tempfile.mkdtemp(prefix="lreorg_load_"))
    (work / "photos").mkdir()
    photos = client_photos(work / "photos", args.clients)
    queue_size = args.clients * args.requests + 8
    print(f"starting python app.py --demo (concurrency {args.concurrency}, queue "
          f"{queue_size}) ...", flush=True)
    started = time.perf_counter()
    server = AppServer(["--demo", "--no-identity", "--concurrency", str(args.concurrency),
                        "--queue-size", str(queue_size), "--cache-seconds",
                        str(args.cache_seconds)], env={}, temp_dir=work / "gradio_tmp",
                       log_path=work / "app.log")
    startup_s = time.perf_counter() - started
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    peak = {"rss": server.peak_rss_mib()}

    def visitor(i: int) -> None:
        # A visitor's browser waits on the queue as long as it takes; give the client the same
        # patience (httpx's default read timeout is shorter than a long queue on a busy CPU).
        client = Client(server.url, verbose=False, analytics_enabled=False,
                        download_files=False, httpx_kwargs={"timeout": 600})
        for _ in range(args.requests):
            start = time.perf_counter()
            try:
                (_, after), gallery, _, record = client.predict(
                    handle_file(str(photos[i])), "lreorg", ["identity"],
                    ["gender", "age", "expression", "makeup"], 1.0, "window", None, None,
                    "random", args.samples, None, api_name="/anonymize")
                if len(gallery) != args.samples + 1 or record["seed"] is not None:
                    raise AssertionError(f"unexpected result: {len(gallery)} images")
                with lock:
                    latencies.append(time.perf_counter() - start)
            except Exception as exc:  # a failure of any kind counts
                with lock:
                    failures.append(f"client {i}: {type(exc).__name__}: {exc}")

    def watch_memory(stop: threading.Event) -> None:
        while not stop.is_set():
            peak["rss"] = max(peak["rss"], server.peak_rss_mib())
            stop.wait(0.5)

    stop = threading.Event()
    watcher = threading.Thread(target=watch_memory, args=(stop,), daemon=True)
    watcher.start()
    began = time.perf_counter()
    try:
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(visitor, range(args.clients)))
        wall = time.perf_counter() - began
        during = [f for f in server.files() if f.name != "astronaut.jpg"]
        deadline = time.monotonic() + 3 * args.cache_seconds + 5
        while time.monotonic() < deadline:
            left_running = [f for f in server.files() if f.name != "astronaut.jpg"]
            if not left_running:
                break
            time.sleep(1)
        stop.set()
        peak["rss"] = max(peak["rss"], server.peak_rss_mib())
    finally:
        code = server.stop(timeout=120)
    left_after = [f for f in server.files() if f.name != "astronaut.jpg"]
    result = {
        "clients": args.clients, "requests_per_client": args.requests,
        "samples_per_request": args.samples, "app_concurrency": args.concurrency,
        "requests": args.clients * args.requests, "completed": len(latencies),
        "failures": len(failures), "failure_examples": failures[:5],
        "latency_s": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                      "max": max(latencies, default=float("nan")),
                      "mean": statistics.fmean(latencies) if latencies else float("nan")},
        "throughput_per_s": len(latencies) / wall if wall else float("nan"),
        "wall_s": wall, "startup_s": startup_s, "server_peak_rss_mib": peak["rss"],
        "files_in_cache_right_after": len(during),
        "upload_files_left_while_running": len(left_running),
        "upload_files_left_after_shutdown": len(left_after), "server_exit_code": code,
    }
    rows = [("clients × requests", f"{args.clients} × {args.requests} "
                                   f"({args.samples} samples each)"),
            ("completed / failures", f"{result['completed']} / {result['failures']}"),
            ("latency p50 / p95 / max (s)", "{p50:.2f} / {p95:.2f} / {max:.2f}".format(
                **result["latency_s"])),
            ("throughput (requests/s)", f"{result['throughput_per_s']:.2f}"),
            ("server peak RSS (MiB)", f"{result['server_peak_rss_mib']:.0f}"),
            ("cache files right after the run", str(len(during))),
            (f"upload files left while running (after purge, {args.cache_seconds} s)",
             str(len(left_running))),
            ("upload files left after shutdown", str(len(left_after))),
            ("server exit code", str(code))]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for failure in failures[:5]:
        print("FAILURE", failure)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")
    ok = not failures and not left_running and not left_after and code == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
