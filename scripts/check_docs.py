#!/usr/bin/env python3
"""Checks adit's documents: every relative link in README.md, ARCHITECTURE.md and the book
(docs/src/**/*.md) points to a file that exists, README.md and ARCHITECTURE.md stay within
their sizes, and every page of the book is listed in docs/src/SUMMARY.md.

    python3 scripts/check_docs.py

Exits 1 naming each file and link that fails. Standard library only."""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "docs", "src")
LIMITS = {"README.md": 12288, "ARCHITECTURE.md": 30720}

# [text](target) and [text]: target; images too. Code spans and fenced blocks are skipped.
INLINE = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")


def prose(text):
    """The text outside fenced code blocks and code spans, line by line."""
    fence = None
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.lstrip()
        marker = re.match(r"(`{3,}|~{3,})", stripped)
        if marker:
            if fence is None:
                fence = marker.group(1)[0] * len(marker.group(1))
                continue
            if stripped.startswith(fence):
                fence = None
                continue
        if fence is not None:
            continue
        yield number, re.sub(r"`+[^`]*`+", "", line)


def links(text):
    for number, line in prose(text):
        for match in INLINE.finditer(line):
            yield number, match.group(1)
        ref = REFDEF.match(line)
        if ref:
            yield number, ref.group(1)


def is_relative(target):
    return not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) and not target.startswith("#")


def check_links(path, errors):
    text = open(path, encoding="utf-8").read()
    for number, target in links(text):
        if not is_relative(target):
            continue
        file_part = target.split("#", 1)[0].split("?", 1)[0]
        if not file_part:
            continue
        if file_part.startswith("/"):
            resolved = os.path.join(ROOT, file_part.lstrip("/"))
        else:
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part))
        if not os.path.exists(resolved):
            errors.append(f"{os.path.relpath(path, ROOT)}:{number}: link to {target}: no such file")


def book_pages():
    for folder, _, files in os.walk(SRC):
        for name in files:
            yield os.path.join(folder, name)


def check_summary(errors):
    summary = os.path.join(SRC, "SUMMARY.md")
    if not os.path.exists(summary):
        errors.append("docs/src/SUMMARY.md: missing")
        return
    listed = set()
    for _, target in links(open(summary, encoding="utf-8").read()):
        if is_relative(target) and target:
            listed.add(os.path.normpath(os.path.join(SRC, target.split("#", 1)[0])))
    for page in book_pages():
        if page == summary or not page.endswith(".md"):
            continue  # the .toml example is included by its page, not listed
        if os.path.normpath(page) not in listed:
            errors.append(f"{os.path.relpath(page, ROOT)}: not listed in docs/src/SUMMARY.md")


def main():
    errors = []
    for name, limit in LIMITS.items():
        path = os.path.join(ROOT, name)
        size = os.path.getsize(path)
        if size > limit:
            errors.append(f"{name}: {size} bytes, over its limit of {limit}")
        check_links(path, errors)
    for page in book_pages():
        if page.endswith(".md"):
            check_links(page, errors)
    check_summary(errors)
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        print(f"check_docs: {len(errors)} problem(s)", file=sys.stderr)
        return 1
    print("check_docs: links, sizes and SUMMARY.md are fine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
