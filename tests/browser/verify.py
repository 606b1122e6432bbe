#!/usr/bin/env python3
"""Checks a payout on adit's /verify page in real headless Chromium (issue 59).

Usage: verify.py --url http://127.0.0.1:PORT --pool P --block H --hash X --miner ADDR
                 --amount N --altered ALTERED.json

Loads /verify with the block and the miner in its query string (the page reads the pool's
public window and checks it in the browser, with its own SHA-256 and BigInt split, apart from
the Rust verifier): it must say EQUAL and show the miner paid AMOUNT. Then pastes the window
in ALTERED.json (one share changed) and checks again: it must say NOT EQUAL.

Fails (exit 1) on any console error, page error or wrong verdict; exits 2 with a clear
message when its tools are missing (scripts/setup.sh installs them). It never skips.
"""

import argparse
import sys
import urllib.parse

from browser_kit import CHROMIUM, Failure, log, sync_playwright


def verdict(page):
    page.wait_for_function(
        "() => ['EQUAL', 'NOT EQUAL', 'NOT CHECKED'].includes(document.getElementById('verdict').textContent)",
        timeout=30000,
    )
    return page.inner_text("#verdict"), page.inner_text("#details")


def main():
    ap = argparse.ArgumentParser()
    for arg in ["url", "pool", "block", "hash", "miner", "amount", "altered"]:
        ap.add_argument(f"--{arg}", required=True)
    a = ap.parse_args()
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        query = urllib.parse.urlencode(
            {"pool": a.pool, "block": a.block, "hash": a.hash, "miner": a.miner}
        )
        page.goto(f"{a.url.rstrip('/')}/verify?{query}")
        said, details = verdict(page)
        log(f"as published: {said}\n{details}")
        if said != "EQUAL":
            raise Failure(f"the published window did not check: {said}\n{details}")
        if f"paid {a.amount}, the window gives {a.amount}" not in details:
            raise Failure(f"the miner's payout is not {a.amount}: {details}")
        with open(a.altered) as f:
            page.fill("#saved", f.read())
        page.evaluate("() => { document.getElementById('verdict').textContent = ''; }")
        page.click("button[type=submit]")
        said, details = verdict(page)
        log(f"altered: {said}\n{details}")
        if said != "NOT EQUAL":
            raise Failure(f"an altered window checked: {said}\n{details}")
        browser.close()
    if errors:
        raise Failure("\n".join(errors))
    log("ok")


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"verify.py: {e}", file=sys.stderr)
        sys.exit(1)
