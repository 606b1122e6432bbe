#!/usr/bin/env python3
"""Drives adit's web dashboard in real headless Chromium (issue 12).

Usage: dashboard.py --url https://localhost:PORT --out SCREENSHOT_DIR [--token T] [--ca CA.pem]

Against a running `adit demo` (tests/it/dashboard.rs starts one): loads every page (overview,
miner with the demo's wallet found through SQL over shares, site, cluster, SQL console,
control), waits for a live update on the overview, checks that the pool hashrate and a
site's power shown are what the SQL API answers to the same query (the page puts the SQL it
ran in `data-sql`), downloads a query as CSV and Parquet, makes and cancels an override and
an emergency shutdown through the control page, and takes a screenshot of each page.

Fails (exit 1) on any console error, page error, failed request or mismatch; exits 2 with a
clear message when its tools are missing (scripts/setup.sh installs them). It never skips.
"""

import argparse
import json
import math
import os
import re
import ssl
import sys
import time
import urllib.error
import urllib.request

from browser_kit import CHROMIUM, Failure, log, sync_playwright


class Api:
    def __init__(self, url, token, ca):
        self.url = url.rstrip("/")
        self.token = token
        # An https:// API's certificate is checked against its CA (--ca) or the system's.
        self.tls = ssl.create_default_context(cafile=ca) if ca else None

    def sql(self, query, fmt="json"):
        req = urllib.request.Request(
            f"{self.url}/api/v1/sql?format={fmt}",
            data=query.encode(),
            headers={"Content-Type": "text/plain"},
            method="POST",
        )
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.tls) as resp:
                body = resp.read()
        except urllib.error.HTTPError as e:
            raise Failure(f"SQL {query!r} answered {e.code}: {e.read().decode(errors='replace')}")
        return json.loads(body) if fmt == "json" else body


UNITS = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}


def shown_number(text, kind):
    """The number a person reads in `text`, in base units (H/s, W)."""
    if kind == "hash":
        m = re.search(r"(-?[\d.]+)\s*([kMGTPE]?)H/s", text)
        if not m:
            raise Failure(f"no hashrate in {text!r}")
        return float(m.group(1)) * UNITS[m.group(2)]
    m = re.search(r"(-?[\d.]+)\s*kW", text)
    if not m:
        raise Failure(f"no power in {text!r}")
    return float(m.group(1)) * 1000.0


class Run:
    def __init__(self, args):
        self.args = args
        self.api = Api(args.url, args.token, args.ca)
        self.errors = []
        self.shots = []
        os.makedirs(args.out, exist_ok=True)

    # -- browser plumbing ---------------------------------------------------------------------
    def watch(self, page):
        def on_console(msg):
            if msg.type == "error":
                self.errors.append(f"console error on {page.url}: {msg.text}")

        def on_response(resp):
            if resp.status >= 400:
                self.errors.append(f"HTTP {resp.status} for {resp.request.method} {resp.url}")

        def on_failed(req):
            failure = req.failure or ""
            # The live stream is cut when the browser closes; nothing else may fail.
            if "/api/v1/live" in req.url and self.closing:
                return
            self.errors.append(f"request failed: {req.method} {req.url}: {failure}")

        self.closing = False
        page.on("console", on_console)
        page.on("pageerror", lambda e: self.errors.append(f"page error on {page.url}: {e}"))
        page.on("response", on_response)
        page.on("requestfailed", on_failed)

    def go(self, page, route):
        page.goto(f"{self.args.url}/#/{route}")
        view = route.split("/")[0]
        page.wait_for_selector(f'.page[data-view="{view}"][data-ready="true"]', timeout=30000)

    def shot(self, page, name):
        page.wait_for_timeout(800)  # let charts and tables settle
        path = os.path.join(self.args.out, f"{len(self.shots) + 1:02d}-{name}.png")
        page.screenshot(path=path, full_page=True)
        self.shots.append(path)
        log(f"screenshot {path}")

    def figure(self, page, testid, timeout=120000):
        sel = f'[data-testid="{testid}"][data-value]'
        page.wait_for_selector(sel, timeout=timeout)
        el = page.locator(sel).first
        return float(el.get_attribute("data-value")), el.get_attribute("data-sql"), el.inner_text()

    def compare(self, page, testid, kind, limit_s=90):
        """The figure shown equals what SQL answers to the SQL the page ran; a minute rolling
        over between the two is retried until the page has refreshed."""
        deadline = time.time() + limit_s
        while True:
            shown, query, text = self.figure(page, testid)
            if not query:
                raise Failure(f"{testid} has no data-sql")
            rows = self.api.sql(query)
            expected = float(rows[0]["value"]) if rows else math.nan
            shown_again, _, text_again = self.figure(page, testid)
            match = [v for v in (shown, shown_again) if math.isclose(v, expected, rel_tol=1e-9, abs_tol=1e-9)]
            if match:
                read = shown_number(text_again if match[0] == shown_again else text, kind)
                if not math.isclose(read, expected, rel_tol=0.01, abs_tol=1e-6):
                    raise Failure(f"{testid} reads {text!r} ({read}) but SQL says {expected}")
                log(f"{testid}: page shows {text_again!r} = {match[0]}, SQL says {expected} ({query})")
                return expected
            if time.time() > deadline:
                raise Failure(f"{testid} shows {shown} / {shown_again} but SQL says {expected} ({query})")
            log(f"{testid}: page {shown}, SQL {expected}: waiting for the page to refresh")
            page.wait_for_timeout(3000)

    def auth_headers(self):
        return {"Authorization": f"Bearer {self.args.token}"} if self.args.token else {}

    # -- pages ----------------------------------------------------------------------------------
    def overview(self, page, site):
        self.go(page, "overview")
        scheme = page.evaluate("location.protocol")
        secure = page.evaluate("window.isSecureContext")
        log(f"served over {scheme} (secure context: {secure})")
        if self.args.url.startswith("https://") and (scheme != "https:" or not secure):
            raise Failure(f"the dashboard is not served over HTTPS: {scheme}, secure context {secure}")
        self.compare(page, "pool-hashrate", "hash")
        self.compare(page, f"site-power-{site}", "power")
        for testid in ("miners-online", "workers-online", "shares-accepted"):
            value, _, text = self.figure(page, testid, timeout=60000)
            log(f"{testid}: {text!r}")
        if self.figure(page, "shares-accepted")[0] <= 0:
            raise Failure("the overview shows no accepted share")
        # Attached, not "visible": a series of one closed minute is a path of one point (drawn
        # as a dot beside it), which has no size, so Playwright's visibility waited a minute
        # for the second.
        page.wait_for_selector(f'[data-testid="site-chart-{site}"] path.series', state="attached", timeout=60000)
        log(f"site-chart-{site}: drawn")
        page.wait_for_selector('[data-testid="pool-hashrate-chart"] svg.chart', timeout=60000)
        log("pool-hashrate-chart: drawn")
        # Where the pool stands: the demo miner on the leaderboard, the pool beside the network.
        page.wait_for_selector('[data-testid="leaderboard-table"] tbody tr', timeout=60000)
        top = page.locator('[data-testid="leaderboard-table"] tbody tr').first.inner_text()
        if not top.startswith("1"):
            raise Failure(f"the leaderboard's first row is not rank 1: {top!r}")
        log(f"leaderboard: {top!r}")
        page.wait_for_selector('[data-testid="pool-vs-network"] svg.chart', timeout=60000)
        log(f"pool and network: {page.locator('[data-testid=network-share]').inner_text()!r}")
        log("waiting for a live update on the overview")
        page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=\"live-event\"]').length > 0",
            timeout=self.args.live_timeout * 1000,
        )
        first = page.locator('[data-testid="live-event"]').first.inner_text()
        state = page.get_attribute('[data-testid="live-status"]', "data-state")
        if state != "live":
            raise Failure(f"live status is {state!r} after an event arrived")
        log(f"live update: {first!r}")
        # After a live energy result, the figures are still what SQL says.
        self.compare(page, f"site-power-{site}", "power")
        self.shot(page, "overview")

    def miner(self, page, wallet):
        self.go(page, "miner")
        page.wait_for_selector('[data-testid="recent-miners"] table', timeout=60000)
        page.fill('[data-testid="miner-input"]', wallet)
        page.click('[data-testid="miner-submit"]')
        page.wait_for_selector('[data-testid="miner-wallet"]', timeout=30000)
        _, _, text = self.figure(page, "miner-hashrate", timeout=60000)
        page.wait_for_selector('[data-testid="workers-table"] td', timeout=60000)
        workers = page.locator('[data-testid="workers-table"]').inner_text()
        if "demo-rig" not in workers:
            raise Failure(f"the demo's worker is not on the miner page: {workers!r}")
        page.wait_for_selector('[data-testid="miner-hashrate-chart"] svg.chart', timeout=60000)
        log(f"miner {wallet[:12]}…: hashrate {text!r}")
        self.shot(page, "miner")

    def site(self, page, site):
        self.go(page, f"site/{site}")
        self.compare(page, "site-power", "power")
        page.wait_for_selector('[data-testid="machine-row"]', timeout=60000)
        machines = page.locator('[data-testid="machine-row"]').count()
        href = page.get_attribute('[data-testid="compliance-link-html"]', "href")
        if not href or f"/api/v1/reports/compliance?site={site}" not in href:
            raise Failure(f"no compliance report link for {site}: {href!r}")
        page.wait_for_selector('[data-testid="site-power-chart"] svg.chart', timeout=60000)
        page.wait_for_selector('[data-testid="site-temp-chart"] svg.chart', timeout=60000)
        # The report itself is issue 12's compliance part; its status is told, not judged here.
        report = page.request.get(f"{self.args.url}{href}", headers=self.auth_headers())
        log(f"site {site}: {machines} machines, report at {href} answers {report.status}")
        self.shot(page, "site")

    def cluster(self, page):
        self.go(page, "cluster")
        page.wait_for_selector('[data-testid="cluster-not-running"], [data-testid^="cluster-hashrate-"]', timeout=60000)
        shown = page.locator('[data-testid="cluster-not-running"]').count()
        log("cluster: " + ("not running (shown as such)" if shown else "running"))
        self.shot(page, "cluster")

    def sql_console(self, page):
        self.go(page, "sql")
        query = "SELECT site, count(*) AS n FROM energy_readings GROUP BY site ORDER BY site"
        page.wait_for_selector('[data-testid="sql-tables"] details', timeout=60000)
        page.fill('[data-testid="sql-input"]', query)
        page.click('[data-testid="sql-run"]')
        page.wait_for_selector('[data-testid="sql-table"]', timeout=60000)
        rows = page.locator('[data-testid="sql-table"] tbody tr').count()
        expected = len(self.api.sql(query))
        if rows != expected:
            raise Failure(f"the SQL console shows {rows} rows, the API {expected}")
        with page.expect_download(timeout=60000) as dl:
            page.click('[data-testid="sql-csv"]')
        csv = open(dl.value.path(), "rb").read().decode()
        if not csv.startswith("site,n\n") or csv.count("\n") != expected + 1:
            raise Failure(f"the CSV download is not the query's rows: {csv!r}")
        with page.expect_download(timeout=60000) as dl:
            page.click('[data-testid="sql-parquet"]')
        parquet = open(dl.value.path(), "rb").read()
        if parquet[:4] != b"PAR1" or parquet[-4:] != b"PAR1":
            raise Failure(f"the Parquet download is not Parquet ({len(parquet)} bytes)")
        log(f"sql console: {rows} rows, CSV {len(csv)} bytes, Parquet {len(parquet)} bytes")
        self.shot(page, "sql")

    def control(self, page, site, other):
        self.go(page, "control")
        page.wait_for_selector('[data-testid="overrides"] .panel-body[data-state]', timeout=60000)
        # An override through the form, then cancelled from the list.
        page.fill('[data-testid="override-site"]', site)
        page.select_option('[data-testid="override-kind"]', "fan_level")
        page.fill('[data-testid="override-value"]', "5")
        page.select_option('[data-testid="override-duration"]', "15m")
        page.fill('[data-testid="override-reason"]', "dashboard browser test")
        page.click('[data-testid="override-submit"]')
        page.wait_for_selector('[data-testid="override-result"][data-state="ok"]', timeout=30000)
        oid = page.get_attribute('[data-testid="override-result"]', "data-id")
        row = f'[data-testid="override-row"][data-id="{oid}"]'
        page.wait_for_selector(f'{row}[data-status="active"]', timeout=90000)
        log(f"override {oid} is listed as active")
        page.click(f'{row} [data-testid="override-cancel"]')
        page.wait_for_selector('[data-testid="confirm-dialog"][open]', timeout=10000)
        page.click('[data-testid="confirm-ok"]')
        page.wait_for_selector(f'{row}[data-status="cancelled"]', timeout=90000)
        log(f"override {oid} is listed as cancelled")
        # The emergency shutdown asks first; declining changes nothing.
        page.fill('[data-testid="emergency-site"]', other)
        page.click('[data-testid="emergency-button"]')
        page.wait_for_selector('[data-testid="confirm-dialog"][open]', timeout=10000)
        page.click('[data-testid="confirm-cancel"]')
        page.wait_for_selector('[data-testid="emergency-result"][data-state="cancelled"]', timeout=10000)
        page.click('[data-testid="emergency-button"]')
        page.wait_for_selector('[data-testid="confirm-dialog"][open]', timeout=10000)
        page.fill('[data-testid="confirm-input"]', other)
        page.click('[data-testid="confirm-ok"]')
        page.wait_for_selector('[data-testid="emergency-result"][data-state="ok"]', timeout=30000)
        eid = page.get_attribute('[data-testid="emergency-result"]', "data-id")
        erow = f'[data-testid="override-row"][data-id="{eid}"]'
        page.wait_for_selector(f'{erow}[data-status="active"][data-kind="temperature"]', timeout=90000)
        log(f"emergency shutdown of {other}: override {eid} is active")
        self.shot(page, "control")

    # -- the whole run --------------------------------------------------------------------------
    def main(self):
        miners = self.api.sql(
            "SELECT miner, count(*) AS n FROM shares WHERE accepted GROUP BY miner ORDER BY n DESC, miner LIMIT 1")
        if not miners:
            raise Failure("no accepted share in SQL: is the demo mining?")
        wallet = miners[0]["miner"]
        sites = [r["site"] for r in self.api.sql("SELECT DISTINCT site FROM site_energy_1m ORDER BY site")]
        if not sites:
            raise Failure("no site_energy_1m rows yet")
        site, other = sites[0], sites[-1]
        log(f"dashboard at {self.args.url}; wallet {wallet[:16]}…; sites {sites}")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            https = self.args.url.startswith("https://")
            # Chromium has its own trust store; the certificate of an https:// API under test
            # comes from a CA of the test's own (--ca), which the Python client checks above.
            context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True,
                                          ignore_https_errors=https)
            if self.args.token:
                # What a person types into the token prompt, kept in the session as the page does.
                context.add_init_script(f"sessionStorage.setItem('adit.token', {json.dumps(self.args.token)})")
            page = context.new_page()
            self.watch(page)
            try:
                for step, run in (
                    ("overview", lambda: self.overview(page, site)),
                    ("miner", lambda: self.miner(page, wallet)),
                    ("site", lambda: self.site(page, site)),
                    ("cluster", lambda: self.cluster(page)),
                    ("sql", lambda: self.sql_console(page)),
                    ("control", lambda: self.control(page, site, other)),
                ):
                    log(f"page: {step}")
                    try:
                        run()
                    except Exception as e:  # noqa: BLE001 - every failure is reported with its page
                        failed = os.path.join(self.args.out, f"failed-{step}.png")
                        page.screenshot(path=failed, full_page=True)
                        raise Failure(f"{step}: {e} (screenshot {failed})") from e
            finally:
                self.closing = True
                context.close()
                browser.close()
        if self.errors:
            raise Failure("errors in the browser:\n  " + "\n  ".join(self.errors))
        log(f"ok: {len(self.shots)} screenshots in {self.args.out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="the dashboard's base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--out", required=True, help="folder for the screenshots")
    ap.add_argument("--token", default=os.environ.get("ADIT_TOKEN", ""), help="bearer token, if the API has tokens")
    ap.add_argument("--ca", default="", help="CA certificate (PEM) of an https:// API's certificate")
    ap.add_argument("--live-timeout", type=int, default=180, help="seconds to wait for a live event")
    args = ap.parse_args()
    run = Run(args)
    try:
        run.main()
    except Failure as e:
        print(f"dashboard.py: FAILED: {e}", file=sys.stderr, flush=True)
        if run.errors:
            print("browser errors so far:\n  " + "\n  ".join(run.errors), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
