#!/usr/bin/env python3
"""Drives the conformance page in headless Chromium and fails unless it reports every
check passing.

Serves the built page (scripts/serve-web --build-only) from a local HTTP server,
starts ChromeDriver, opens the page through ChromeDriver's HTTP (W3C WebDriver) API with
the Chromium binary and flags of the given webdriver.json (the same file the
wasm-bindgen tests use), waits for the page to finish, prints the adapter and the table,
and exits non-zero unless every requested check ran and passed. Standard library only;
never downloads a browser.

    page_test.py --dist web-dist --webdriver-json target/test-web/webdriver.json
"""

import argparse
import contextlib
import functools
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

# Every check of the conformance crate that a browser runs (threads needs threads).
EXPECTED_CHECKS = [
    "gemm", "batched_gemm", "gemm_ex", "conv2d", "attention", "attention_ex", "reduce", "rows", "unary",
    "binary", "copy", "cast", "misuse", "memory", "ordering", "binary_broadcast", "gather", "conv2d_ex",
    "gemm_q", "unary_param", "half_storage",
]


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".js": "text/javascript",
    }

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, *args):
        pass


def serve(directory):
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=directory)
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebDriver:
    def __init__(self, base):
        self.base = base

    def call(self, method, path, body=None, timeout=60):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path, data=data, method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.load(r).get("value")
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"webdriver {method} {path}: {e.read().decode(errors='replace')}")


def chrome_options(webdriver_json):
    with open(webdriver_json) as f:
        options = json.load(f)["goog:chromeOptions"]
    args = list(options.get("args", []))
    # As wasm-bindgen-test-runner adds them: headless, no sandbox (root in CI), no /dev/shm.
    for extra in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage"]:
        if extra not in args:
            args.append(extra)
    return {**options, "args": args}


@contextlib.contextmanager
def browser(webdriver_json, chromedriver, driver_log=None):
    """Starts ChromeDriver and a Chromium session with the flags of `webdriver_json`;
    yields (WebDriver, session id); closes both afterwards, whatever happened."""
    port = free_port()
    log = open(driver_log, "w") if driver_log else subprocess.DEVNULL
    driver = subprocess.Popen([chromedriver, f"--port={port}"], stdout=log, stderr=log)
    wd = WebDriver(f"http://127.0.0.1:{port}")
    session = None
    try:
        start = time.monotonic()
        while True:
            try:
                wd.call("GET", "/status", timeout=2)
                break
            except (OSError, RuntimeError):
                if time.monotonic() - start > 20 or driver.poll() is not None:
                    sys.exit("chromedriver did not start")
                time.sleep(0.2)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": chrome_options(webdriver_json),
        }}}
        session = wd.call("POST", "/session", caps, timeout=120)["sessionId"]
        yield wd, session
    finally:
        if session:
            try:
                wd.call("DELETE", f"/session/{session}", timeout=30)
            except (OSError, RuntimeError) as e:
                print(f"closing the browser session failed: {e}", file=sys.stderr)
        driver.terminate()
        try:
            driver.wait(10)
        except subprocess.TimeoutExpired:
            driver.kill()


def print_report(report):
    print(f"backend: {report.get('backend')}")
    if report.get("browser_adapter"):
        print(f"browser adapter info: {report['browser_adapter']}")
    if report.get("adapter"):
        print(f"wgpu adapter: {report['adapter']}")
    print(f"cases per check: {report.get('cases')}, seed {report.get('seed')}")
    print(f"{'check':<14} {'passed':>7} {'failed':>7} {'expected':>9} {'worst/tol':>10} "
          f"{'worst abs':>10} {'time ms':>9}")
    for c in report.get("checks", []):
        print(f"{c['check']:<14} {c['passed']:>7} {c['failed']:>7} {c['expected_failures']:>9} "
              f"{c['worst_ratio']:>10.3e} {c['worst_abs']:>10.3e} {c['millis']:>9.0f}")
    for c in report.get("checks", []):
        for n in c.get("notes", []):
            print(f"note: {c['check']}: {n}")
        for f in c.get("failures", []):
            print(f"FAILED {c['check']}: {f['message']}")
            if f.get("case"):
                print(f"  minimal case: {f['case']}")


def problems_of(report):
    if "error" in report:
        return [f"the page could not run the suite: {report['error']}"]
    found = []
    requested = report.get("requested", [])
    ran = [c["check"] for c in report.get("checks", [])]
    for check in EXPECTED_CHECKS:
        if check not in requested:
            found.append(f"the page did not run {check}")
    for check in requested:
        if check not in ran:
            found.append(f"{check} was requested but has no report")
    for c in report.get("checks", []):
        if c["failed"] > 0:
            found.append(f"{c['check']}: {c['failed']} failed")
        elif c["passed"] == 0 and c["check"] != "threads":
            found.append(f"{c['check']}: no case ran")
    if not report.get("ok"):
        found.append("the page reports ok = false")
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dist", default="web-dist", help="the built page")
    ap.add_argument("--webdriver-json", required=True)
    ap.add_argument("--chromedriver", default=os.environ.get("CHROMEDRIVER", "chromedriver"))
    ap.add_argument("--query", default="", help="query string for the page, e.g. cases=8")
    ap.add_argument("--timeout", type=float, default=300, help="seconds for the whole suite")
    ap.add_argument("--driver-log", default=None)
    args = ap.parse_args()

    if not os.path.exists(os.path.join(args.dist, "pkg", "index.js")):
        sys.exit(f"page test: {args.dist}/pkg is missing; run scripts/serve-web --build-only")

    server = serve(args.dist)
    url = f"http://127.0.0.1:{server.server_address[1]}/" + (f"?{args.query}" if args.query else "")
    try:
        with browser(args.webdriver_json, args.chromedriver, args.driver_log) as (wd, session):
            start = time.monotonic()
            print(f"page test: opening {url}", flush=True)
            wd.call("POST", f"/session/{session}/url", {"url": url}, timeout=120)
            deadline = time.monotonic() + args.timeout
            last = None
            while True:
                state, status = wd.call("POST", f"/session/{session}/execute/sync", {
                    "script": "return [document.body.dataset.state, "
                              "document.getElementById('status').textContent]",
                    "args": [],
                })
                key = (state, status.split(":")[0])
                if key != last:
                    print(f"page test: [{state}] {status}", flush=True)
                    last = key
                if state in ("done", "error"):
                    break
                if time.monotonic() > deadline:
                    sys.exit(f"page test: the page did not finish in {args.timeout:.0f} s "
                             f"(last status: {status})")
                time.sleep(0.5)
            text = wd.call("POST", f"/session/{session}/execute/sync", {
                "script": "return document.getElementById('report-json').textContent",
                "args": [],
            })
            report = json.loads(text)
            print(f"page test: finished in {time.monotonic() - start:.1f} s", flush=True)
    finally:
        server.shutdown()

    if "error" not in report:
        print_report(report)
    problems = problems_of(report)
    if problems:
        print("page test FAILED:\n  " + "\n  ".join(problems))
        sys.exit(1)
    print(f"page test passed: all {len(report['checks'])} checks passed on {report['backend']}")


if __name__ == "__main__":
    main()
