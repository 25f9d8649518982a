"""Load check of the app: N concurrent gradio_client clients on loopback against
``python app.py --demo``; prints a table and writes JSON.

    .venv/bin/python scripts/load_check.py [--clients 20] [--requests 2] [--samples 2]
    .venv/bin/python scripts/load_check.py --clients 2 --requests 1 --json /tmp/check.json

Each client is a visitor with a photo of their own (the example, shifted and flipped) who
asks LReOrg for k diverse versions. Reported: requests completed and failed (failures must
be 0), latency p50 / p95 / max, throughput, the server's peak resident memory, and the files
of visitors left in Gradio's temporary folder (1) right after the run, (2) once the app's
stated time for results has passed and (3) after a clean shutdown (SIGTERM, as Docker and
Spaces stop a container); (2) and (3) must be 0. The example photo's own copy is shared by
every visitor and is not counted. The work folder (photos, Gradio's folder, the app's log) is
removed at the end; ``--keep-work`` keeps it for a look.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
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

SWEEP_SECONDS = 5  # the app deletes due files this often (lreorg_hub.serving.FileRules)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The whole description as written, and every option's default."""


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


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="load_check.py", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--clients", type=int, default=20, help="concurrent visitors")
    p.add_argument("--requests", type=int, default=2, help="requests per client")
    p.add_argument("--samples", type=int, default=2, help="diverse versions per request")
    p.add_argument("--concurrency", type=int, default=2, help="the app's --concurrency")
    p.add_argument("--result-seconds", type=int, default=10,
                   help="the app's --result-seconds: results are deleted this long after "
                        "they are made")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" /
                   "app_load_check.json", help="where to write the JSON report")
    p.add_argument("--keep-work", action="store_true",
                   help="keep the work folder (photos, Gradio's folder, the app's log)")
    return p.parse_args(argv)


def visitor_files(server: AppServer) -> list[Path]:
    return [f for f in server.files() if f.name != "astronaut.jpg"]


def main(argv=None) -> int:
    args = parse_args(argv)
    from gradio_client import Client, handle_file

    work = Path(tempfile.mkdtemp(prefix="lreorg_load_"))
    try:
        return run(args, work, Client, handle_file)
    finally:
        if args.keep_work:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path, Client, handle_file) -> int:
    (work / "photos").mkdir()
    photos = client_photos(work / "photos", args.clients)
    queue_size = args.clients * args.requests + 8
    print(f"starting python app.py --demo (concurrency {args.concurrency}, queue "
          f"{queue_size}) ...", flush=True)
    started = time.perf_counter()
    server = AppServer(["--demo", "--no-identity", "--concurrency", str(args.concurrency),
                        "--queue-size", str(queue_size), "--result-seconds",
                        str(args.result_seconds)], env={}, temp_dir=work / "gradio_tmp",
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
                (_, after), gallery, _, _, record = client.predict(
                    handle_file(str(photos[i])), "lreorg", ["identity"],
                    ["gender", "age", "expression", "makeup"], 1.0, "window", None, None,
                    "random", args.samples, api_name="/anonymize")
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
        right_after = visitor_files(server)
        deadline = time.monotonic() + args.result_seconds + SWEEP_SECONDS + 2
        while time.monotonic() < deadline:
            left_running = visitor_files(server)
            if not left_running:
                break
            time.sleep(1)
        stop.set()
        peak["rss"] = max(peak["rss"], server.peak_rss_mib())
    finally:
        code = server.stop(timeout=120, sig=signal.SIGTERM)
    left_after = visitor_files(server)
    result = {
        "clients": args.clients, "requests_per_client": args.requests,
        "samples_per_request": args.samples, "app_concurrency": args.concurrency,
        "result_seconds": args.result_seconds,
        "requests": args.clients * args.requests, "completed": len(latencies),
        "failures": len(failures), "failure_examples": failures[:5],
        "latency_s": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                      "max": max(latencies, default=float("nan")),
                      "mean": statistics.fmean(latencies) if latencies else float("nan")},
        "throughput_per_s": len(latencies) / wall if wall else float("nan"),
        "wall_s": wall, "startup_s": startup_s, "server_peak_rss_mib": peak["rss"],
        "files_right_after_the_run": len(right_after),
        "files_left_after_the_stated_time": len(left_running),
        "files_left_after_sigterm": len(left_after), "server_exit_code": code,
    }
    rows = [("clients × requests", f"{args.clients} × {args.requests} "
                                   f"({args.samples} versions each)"),
            ("completed / failures", f"{result['completed']} / {result['failures']}"),
            ("latency p50 / p95 / max (s)", "{p50:.2f} / {p95:.2f} / {max:.2f}".format(
                **result["latency_s"])),
            ("throughput (requests/s)", f"{result['throughput_per_s']:.2f}"),
            ("server peak RSS (MiB)", f"{result['server_peak_rss_mib']:.0f}"),
            ("visitor files right after the run", str(len(right_after))),
            (f"visitor files left after {args.result_seconds} s + the sweep",
             str(len(left_running))),
            ("visitor files left after SIGTERM", str(len(left_after))),
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
