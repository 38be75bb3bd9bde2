#!/usr/bin/env python3
"""Runs the JS API tests of backend-js (test/index.html + tests.js) in headless Chromium,
once per engine, and fails unless every test passes on each.

Serves a folder holding the built package in pkg/ (scripts/build-js) and this folder's
page, opens it through ChromeDriver with the flags of the given webdriver.json (the same
file the wasm-bindgen tests use), and prints each test's outcome. Standard library only;
the WebDriver and server helpers are the conformance page test's (backend-wasm/www/page_test.py).

    run.py --pkg target/js-pkg --webdriver-json target/test-web/webdriver.json --engine webgpu --engine cpu
"""

import argparse
import functools
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "backend-wasm", "www"))
from page_test import Handler, browser  # noqa: E402


class IsolatingHandler(Handler):
    """Serves with COOP/COEP for paths under /isolated/ (the same files), so one server
    gives the page both ways."""

    def translate_path(self, path):
        if path.startswith("/isolated/"):
            path = path[len("/isolated"):]
        return super().translate_path(path)

    def end_headers(self):
        if self.path.startswith("/isolated/"):
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()


def serve(directory):
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(IsolatingHandler, directory=directory)
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_page(wd, session, url, timeout):
    wd.call("POST", f"/session/{session}/url", {"url": url}, timeout=120)
    deadline = time.monotonic() + timeout
    last = None
    while True:
        state, status = wd.call("POST", f"/session/{session}/execute/sync", {
            "script": "return [document.body.dataset.state, document.getElementById('status').textContent]",
            "args": [],
        })
        if status != last:
            print(f"js tests: [{state}] {status}", flush=True)
            last = status
        if state in ("done", "error"):
            break
        if time.monotonic() > deadline:
            return {"ok": False, "error": f"the page did not finish in {timeout:.0f} s (last status: {status})"}
        time.sleep(0.3)
    text = wd.call("POST", f"/session/{session}/execute/sync", {
        "script": "return document.getElementById('report-json').textContent", "args": [],
    })
    return json.loads(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pkg", required=True, help="the built package (scripts/build-js)")
    ap.add_argument("--webdriver-json", required=True)
    ap.add_argument("--chromedriver", default=os.environ.get("CHROMEDRIVER", "chromedriver"))
    ap.add_argument("--engine", action="append", help="webgpu, cpu or auto (repeatable)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per engine")
    ap.add_argument("--page", default="", help="another page of this folder, e.g. bench.html")
    ap.add_argument("--isolated", action="store_true",
                    help="also run the first engine's page served with COOP/COEP headers")
    ap.add_argument("--driver-log", default=None)
    args = ap.parse_args()
    engines = args.engine or ["webgpu", "cpu"]

    site = tempfile.mkdtemp(prefix="backend-js-tests-")
    shutil.copytree(args.pkg, os.path.join(site, "pkg"))
    for f in ("index.html", "tests.js", "worker.js", "fixture.json", "bench.html", "bench.js"):
        shutil.copy(os.path.join(HERE, f), site)

    server = serve(site)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    reports = {}
    try:
        with browser(args.webdriver_json, args.chromedriver, args.driver_log) as (wd, session):
            for engine in engines:
                print(f"js tests: engine {engine}", flush=True)
                reports[engine] = run_page(wd, session, f"{base}{args.page}?engine={engine}", args.timeout)
            if args.isolated:
                # The same page served cross-origin isolated (COOP/COEP), on the first engine.
                engine = engines[0]
                print(f"js tests: engine {engine}, cross-origin isolated", flush=True)
                reports[f"{engine}, isolated"] = run_page(
                    wd, session, f"{base}isolated/{args.page}?engine={engine}&isolated=1", args.timeout)
    finally:
        server.shutdown()
        shutil.rmtree(site, ignore_errors=True)

    failed = []
    for engine, r in reports.items():
        if "error" in r:
            failed.append(f"{engine}: {r['error']}")
            continue
        print(f"js tests on {r['backend']} (engine {r['engine']}):")
        for row in r.get("bench", []):
            print(f"  {row['op']:<26} {row['mib']:>3} MiB {row['ms']:>9.2f} ms {row['gbps']:>7.2f} GB/s  staged {row['staged']}")
        for t in r["tests"]:
            print(f"  {'ok  ' if t['ok'] else 'FAIL'} {t['name']}")
            if not t["ok"]:
                print(f"       {t['error']}")
                failed.append(f"{engine}: {t['name']}")
        if r["engine"] != engine.split(",")[0] and engine != "auto":
            failed.append(f"{engine}: the page ran on {r['engine']}")
        if not r["tests"] and not r.get("bench"):
            failed.append(f"{engine}: no test ran")
    if failed:
        print("js tests FAILED:\n  " + "\n  ".join(failed))
        sys.exit(1)
    print(f"js tests passed on {', '.join(reports)}")


if __name__ == "__main__":
    main()
