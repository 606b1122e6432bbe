#!/usr/bin/env python3
"""Reads a pool's public team page (/pool, issue 61) in real headless Chromium.

Usage: teams.py --url http://127.0.0.1:PORT --pool P --teams red,blue --competition ID --shot OUT.png

Loads /pool?pool=P&window=1h with no token: the teams table must list TEAMS in that order
(ranked by work), and the competition ID must be shown running with the same teams in its
standings. Takes a screenshot. Fails (exit 1) on any console error, page error or wrong
table; exits 2 with a clear message when its tools are missing (scripts/setup.sh installs
them). It never skips.
"""

import argparse
import sys

from browser_kit import CHROMIUM, Failure, log, sync_playwright


def teams_in(page, selector):
    rows = page.locator(f"{selector} tbody tr").all_inner_texts()
    return rows, [r.split("\t")[1] for r in rows if "\t" in r]


def main():
    ap = argparse.ArgumentParser()
    for arg in ["url", "pool", "teams", "competition", "shot"]:
        ap.add_argument(f"--{arg}", required=True)
    a = ap.parse_args()
    want = a.teams.split(",")
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.goto(f"{a.url.rstrip('/')}/pool?pool={a.pool}&window=1h")
        page.wait_for_selector("body[data-loaded=true]", timeout=30000)
        error = page.inner_text("[data-testid=teams-error]")
        if error:
            raise Failure(f"the page says {error!r}")
        rows, shown = teams_in(page, "[data-testid=teams-table]")
        log(f"teams: {rows}")
        if shown != want:
            raise Failure(f"the teams shown are {shown}, not {want}")
        section = f"[data-testid=competition-{a.competition}]"
        heading = page.inner_text(f"{section} h3")
        if "(running)" not in heading:
            raise Failure(f"competition {a.competition} is not shown running: {heading!r}")
        rows, shown = teams_in(page, section)
        log(f"{heading}: {rows}")
        if shown != want:
            raise Failure(f"its standings are {shown}, not {want}")
        page.screenshot(path=a.shot, full_page=True)
        log(f"screenshot {a.shot}")
        browser.close()
    if errors:
        raise Failure("\n".join(errors))
    log("ok")


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"teams.py: {e}", file=sys.stderr)
        sys.exit(1)
