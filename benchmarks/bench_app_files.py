"""How long a visitor's upload and results stay fetchable by someone else, and where they lie.

One client uploads a photo (with EXIF) and runs ``/anonymize``; right after the response a
second party with no session (plain HTTP GETs, no cookies) fetches the upload's URL and every
result URL once a second until each fails. Prints a table and writes JSON.

    python benchmarks/bench_app_files.py                       # starts python app.py --demo
    python benchmarks/bench_app_files.py --url http://127.0.0.1:7870/ --max-wait 700
                                                               # an app already running

The upload's server path is learnt the way gradio_client learns it (``POST
/gradio_api/upload``): Gradio names the folder after a keyed hash of the bytes, so the
client's own upload of the same photo, a moment later, lands on the same path.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _photo(folder: Path) -> Path:
    """The example photo with a fresh EXIF text (so its bytes, and its URL, are new)."""
    exif = Image.Exif()
    exif[0x010E] = f"bench {time.time_ns()}"
    path = folder / "visitor_selfie.jpg"
    Image.open(ROOT / "examples" / "astronaut.jpg").save(path, quality=90, exif=exif.tobytes())
    return path


def _call(client, photo: Path) -> dict:
    """``/anonymize`` with blur (fast), every other parameter at the API's default."""
    from gradio_client import handle_file

    info = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    kwargs = {}
    for p in info["/anonymize"]["parameters"]:
        name = p["parameter_name"]
        if name == "photo":
            kwargs[name] = handle_file(str(photo))
        elif name == "method":
            kwargs[name] = "blur"
        elif not p["parameter_has_default"]:
            kwargs[name] = None
    return client.predict(**kwargs, api_name="/anonymize")


def _urls(value, out: list[str]) -> list[str]:
    if isinstance(value, dict):
        if isinstance(value.get("url"), str):
            out.append(value["url"])
        for v in value.values():
            _urls(v, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _urls(v, out)
    return out


def measure(url: str, max_wait: float, every: float = 1.0) -> dict:
    """Upload, run, then poll as a second party; seconds until each URL failed (None: still
    fetchable after ``max_wait``)."""
    import httpx
    from gradio_client import Client

    work = Path(tempfile.mkdtemp(prefix="lreorg_bench_files_"))
    try:
        photo = _photo(work)
        client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
        server_path = httpx.post(client.upload_url, files=[
            ("files", (photo.name, photo.read_bytes()))]).raise_for_status().json()[0]
        upload_url = f"{url}gradio_api/file={server_path}"
        result = _call(client, photo)
        answered = time.monotonic()
        targets = {"upload": upload_url, **{f"result {i + 1}": u for i, u in
                                            enumerate(dict.fromkeys(_urls(result, [])))}}
        first_fail: dict[str, float | None] = {k: None for k in targets}
        fetched_right_after: dict[str, int] = {}
        with httpx.Client(timeout=10) as other:  # the second party: no session, no cookies
            while time.monotonic() - answered < max_wait:
                for name, target in targets.items():
                    if first_fail[name] is not None:
                        continue
                    code = other.get(target).status_code
                    fetched_right_after.setdefault(name, code)
                    if code != 200:
                        first_fail[name] = time.monotonic() - answered
                if all(v is not None for v in first_fail.values()):
                    break
                time.sleep(every)
        return {"url": url, "upload_path": server_path, "max_wait_s": max_wait,
                "poll_every_s": every,
                "status_right_after_response": fetched_right_after,
                "fetchable_for_s": first_fail}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--url", help="a running app (default: start python app.py --demo here)")
    p.add_argument("--max-wait", type=float, default=180.0,
                   help="give up polling after this many seconds")
    p.add_argument("--out", type=Path,
                   default=ROOT / "benchmarks" / "results" / "app_files.json")
    args = p.parse_args(argv)
    server = work = None
    if args.url:
        url = args.url.rstrip("/") + "/"
    else:
        from app_server import AppServer

        work = Path(tempfile.mkdtemp(prefix="lreorg_bench_app_"))
        server = AppServer(["--demo", "--no-identity"], env={},
                           temp_dir=work / "gradio_tmp", log_path=work / "app.log")
        url = server.url
    try:
        report = measure(url, args.max_wait)
    finally:
        if server is not None:
            report_code = server.stop()
            shutil.rmtree(work, ignore_errors=True)
    if server is not None:
        report["server_exit_code"] = report_code
    for name, seconds in report["fetchable_for_s"].items():
        status = report["status_right_after_response"].get(name)
        shown = "still fetchable" if seconds is None else f"{seconds:.1f} s"
        print(f"{name:<10}  first GET after the response: {status}   fetchable for: {shown}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
