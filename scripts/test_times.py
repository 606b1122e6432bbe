#!/usr/bin/env python3
"""Where the test command's time goes: reads the JUnit report nextest writes on every run
(`target/nextest/default/junit.xml` under the repository: nextest keeps its store there,
whatever CARGO_TARGET_DIR says; .config/nextest.toml) and prints the slowest tests,
each binary's total, and the heavy group's (its tests take turns, so their sum is a floor
under the run's wall time).

    python3 scripts/test_times.py [JUNIT] [--top 25]

Standard library only."""

import argparse
import os
import re
import sys
import tomllib
import xml.etree.ElementTree as ET

# The heavy group, read from .config/nextest.toml: the override whose test-group is "heavy",
# its `package(P) & test(/REGEX/)` filter turned into a regex over "binary test" names (the
# root package's integration tests are the binary `adit::it`).
def heavy_pattern(root):
    with open(os.path.join(root, ".config", "nextest.toml"), "rb") as f:
        config = tomllib.load(f)
    for o in config.get("profile", {}).get("default", {}).get("overrides", []):
        if o.get("test-group") == "heavy":
            m = re.fullmatch(r"package\((\S+)\) & test\(/\^(.*)/\)", o["filter"])
            if not m:
                sys.exit(f"the heavy group's filter is not package(P) & test(/^REGEX/): {o['filter']}")
            binary = "adit::it" if m.group(1) == "adit" else f"{m.group(1)}::it"
            return re.compile(f"^{re.escape(binary)} {m.group(2)}")
    sys.exit(".config/nextest.toml has no heavy test group")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser()
    ap.add_argument("junit", nargs="?",
                    default=os.path.join(root, "target", "nextest", "default", "junit.xml"))
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    if not os.path.exists(a.junit):
        sys.exit(f"no JUnit report at {a.junit}: run the tests first (./scripts/test.sh)")
    heavy_re = heavy_pattern(root)
    root = ET.parse(a.junit).getroot()
    tests = []
    for suite in root.iter("testsuite"):
        for case in suite.iter("testcase"):
            name = f"{suite.get('name')} {case.get('name')}"
            failed = case.find("failure") is not None or case.find("error") is not None
            tests.append((float(case.get("time", 0)), name, failed))
    if not tests:
        sys.exit(f"{a.junit} holds no test")
    total = sum(t for t, _, _ in tests)
    wall = float(root.get("time", 0))
    heavy = sum(t for t, n, _ in tests if heavy_re.match(n))
    print(f"{len(tests)} tests, {total:.0f} s of test time in {wall:.0f} s of wall time "
          f"(heavy group, one at a time: {heavy:.0f} s)")
    by_binary = {}
    for t, name, _ in tests:
        binary = name.split(" ")[0]
        by_binary[binary] = by_binary.get(binary, 0) + t
    print("\nby binary:")
    for binary, t in sorted(by_binary.items(), key=lambda x: -x[1]):
        print(f"  {t:8.1f} s  {binary}")
    print(f"\nslowest {a.top}:")
    for t, name, failed in sorted(tests, reverse=True)[:a.top]:
        mark = " (heavy)" if heavy_re.match(name) else ""
        mark += " FAILED" if failed else ""
        print(f"  {t:8.1f} s  {name}{mark}")


if __name__ == "__main__":
    main()
