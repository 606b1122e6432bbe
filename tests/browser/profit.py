#!/usr/bin/env python3
"""Checks a site's Profit per machine panel in real headless Chromium (issue 60).

Usage: profit.py --url http://127.0.0.1:PORT --token T --site S --expect EXPECT.json --shot OUT.png

Loads the site's page with the token in the session (as a person's typed token is kept), waits
for the panel's table, and checks that it lists every machine of EXPECT.json (a list of
{"machine": id, "margin": number}) with that margin and every figure shown, then screenshots
the panel.

Fails (exit 1) on any console error, page error or a figure the page shows wrong; exits 2 with
a clear message when its tools are missing (scripts/setup.sh installs them). It never skips.
"""

import argparse
import json
import sys

from browser_kit import CHROMIUM, Failure, log, sync_playwright


def main():
    ap = argparse.ArgumentParser()
    for arg in ["url", "token", "site", "expect", "shot"]:
        ap.add_argument(f"--{arg}", required=True)
    a = ap.parse_args()
    with open(a.expect) as f:
        expect = json.load(f)
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.add_init_script(f"sessionStorage.setItem('adit.token', {json.dumps(a.token)})")
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.goto(f"{a.url.rstrip('/')}/#/site/{a.site}")
        page.wait_for_selector('[data-testid="profit-row"]', timeout=60000)
        rows = {}
        for row in page.query_selector_all('[data-testid="profit-row"]'):
            cells = [c.inner_text().strip() for c in row.query_selector_all("td")]
            rows[row.get_attribute("data-machine")] = (row.get_attribute("data-margin"), cells)
        log(f"profit panel: {json.dumps(rows)}")
        for want in expect:
            if want["machine"] not in rows:
                raise Failure(f"{want['machine']} is not in the panel: {rows}")
            margin, cells = rows[want["machine"]]
            if margin is None or abs(float(margin) - want["margin"]) > 1e-12:
                raise Failure(f"{want['machine']}: the row's margin {margin}, the view's {want['margin']}")
            if len(cells) != 9 or any(c in ("", "—") for c in cells):
                raise Failure(f"{want['machine']}: a figure is missing in {cells}")
        panel = page.query_selector('[data-testid="site-profit"]')
        panel.screenshot(path=a.shot)
        log(f"screenshot: {a.shot}")
        browser.close()
    if errors:
        raise Failure("; ".join(errors))


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"profit.py: {e}", file=sys.stderr)
        sys.exit(1)
