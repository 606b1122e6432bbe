#!/usr/bin/env python3
"""Reads the coordinator's page in real headless Chromium (issue 61).

Usage: cluster.py --url http://127.0.0.1:PORT/ --cluster ID --workers rig1,rig3 --shot OUT.png

The page must name the cluster, list each worker online, draw valid shares over time and show
the current job's height, all from the coordinator's own REST API; it is screenshotted.

Fails (exit 1) on any console error, page error or missing figure; exits 2 with a clear
message when its tools are missing (scripts/setup.sh installs them). It never skips.
"""

import argparse
import sys

from browser_kit import CHROMIUM, Failure, log, sync_playwright


def main():
    ap = argparse.ArgumentParser()
    for arg in ["url", "cluster", "workers", "shot"]:
        ap.add_argument(f"--{arg}", required=True)
    a = ap.parse_args()
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.goto(a.url)
        page.wait_for_selector("body[data-loaded=true]", timeout=30000)
        shown = page.inner_text("[data-testid=cluster-id]")
        if shown != a.cluster:
            raise Failure(f"the page names cluster {shown!r}, not {a.cluster!r}")
        log(f"upstream: {page.inner_text('[data-testid=upstream]')!r}")
        rows = page.locator("[data-testid=workers] tbody tr").all_inner_texts()
        for worker in a.workers.split(","):
            row = next((r for r in rows if r.split("\t")[0] == worker), None)
            if row is None or row.split("\t")[1] != "yes":
                raise Failure(f"worker {worker} is not listed online: {rows}")
        log(f"workers: {rows}")
        page.wait_for_selector("[data-testid=shares-chart] rect.valid", timeout=30000)
        log(f"shares: {page.inner_text('[data-testid=shares-note]')!r}")
        job = page.inner_text("[data-testid=job]")
        if "height" not in job:
            raise Failure(f"no current job: {job!r}")
        log(f"job: {job!r}")
        page.screenshot(path=a.shot, full_page=True)
        browser.close()
    if errors:
        raise Failure("\n".join(errors))
    log("ok")


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"cluster.py: {e}", file=sys.stderr)
        sys.exit(1)
