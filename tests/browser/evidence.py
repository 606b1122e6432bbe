#!/usr/bin/env python3
"""Checks one curtailment event's evidence on a compliance report page in real headless
Chromium (issue 60).

Usage: evidence.py --url REPORT_URL --token T --event ID --baseline TEXT --met yes|no
                   --minutes N --shot OUT.png

Loads the report (the token sent as a bearer header, as an auditor's client would), waits for
the event's evidence section, checks its baseline, whether it was met, that its chart is drawn
and that it lists N minutes, then screenshots the section.

Fails (exit 1) on any console error, page error or a figure the page shows wrong; exits 2 with
a clear message when its tools are missing (scripts/setup.sh installs them). It never skips.
"""

import argparse
import json
import sys

from browser_kit import CHROMIUM, Failure, log, sync_playwright


def main():
    ap = argparse.ArgumentParser()
    for arg in ["url", "token", "event", "baseline", "met", "minutes", "shot"]:
        ap.add_argument(f"--{arg}", required=True)
    a = ap.parse_args()
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(
            viewport={"width": 900, "height": 1000},
            extra_http_headers={"Authorization": f"Bearer {a.token}"},
        )
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.goto(a.url)
        selector = f'section.evidence[data-event={json.dumps(a.event)}]'
        section = page.wait_for_selector(selector, timeout=30000)
        baseline = section.query_selector('[id$="-baseline"]').inner_text().strip()
        met = section.query_selector('[id$="-met"]').inner_text().strip()
        minutes = len(section.query_selector_all("tr.interval"))
        drawn = section.query_selector("svg path") is not None
        log(f"evidence of {a.event}: baseline {baseline!r}, met {met!r}, {minutes} minutes, chart {drawn}")
        if baseline != a.baseline:
            raise Failure(f"the baseline shows {baseline!r}, expected {a.baseline!r}")
        if met != a.met:
            raise Failure(f"met shows {met!r}, expected {a.met!r}")
        if minutes != int(a.minutes):
            raise Failure(f"{minutes} minutes listed, expected {a.minutes}")
        if not drawn:
            raise Failure("the evidence chart has no line")
        section.screenshot(path=a.shot)
        log(f"screenshot: {a.shot}")
        browser.close()
    if errors:
        raise Failure("; ".join(errors))


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"evidence.py: {e}", file=sys.stderr)
        sys.exit(1)
