"""What every browser script here shares: Chromium's path, Playwright (a missing tool exits 2
with how to install it, never a skip), the failure type and the timestamped log line."""

import os
import sys
import time

CHROMIUM = os.environ.get("ADIT_CHROMIUM", "/usr/bin/chromium")
SCRIPT = os.path.basename(sys.argv[0])


def missing(what):
    print(f"{SCRIPT}: {what}; run scripts/setup.sh to install it", file=sys.stderr)
    sys.exit(2)


try:
    from playwright.sync_api import sync_playwright  # noqa: F401 (re-exported)
except ImportError:
    missing("the Python package playwright is not installed (pip install playwright)")
if not os.access(CHROMIUM, os.X_OK):
    missing(f"Chromium is not at {CHROMIUM} (Debian package chromium)")


class Failure(Exception):
    pass


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)
