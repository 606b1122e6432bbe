#!/usr/bin/env python3
"""Circles of files importing each other inside each crate of the workspace.

Reads every `src/**/*.rs` of every crate, resolves each `crate::…` and `super::…` path a
file names to the file that defines the module, and prints each strongly connected group
of two or more files. A child module naming its parent through `super::` counts like any
other import; a file's own `#[cfg(test)] mod tests` block is skipped, since a test reaching
into its own file is no circle. Exits 1 when a circle is found, so it can guard the layout.

Usage: scripts/import_cycles.py [workspace root]
"""

import re
import sys
from pathlib import Path

PATH_RE = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP_RE = re.compile(r"\buse\s+(crate|super)::\{([^;]*)\}\s*;", re.S)
TESTS_RE = re.compile(r"#\[cfg\(test\)\]\s*mod\s+tests\s*\{")


def crate_roots(root: Path):
    """Each crate's `src` folder: the root package and every member with a `src/lib.rs`."""
    for lib in sorted(root.glob("*/src/lib.rs")) + [root / "src" / "lib.rs"]:
        if lib.exists():
            yield lib.parent


def module_of(src: Path, file: Path):
    """The module path of `file` inside the crate whose sources are `src`."""
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("lib", "main", "mod"):
        parts = parts[:-1]
    return tuple(parts)


def strip_tests(text: str) -> str:
    """The text without a trailing `#[cfg(test)] mod tests { … }` block."""
    m = TESTS_RE.search(text)
    return text[: m.start()] if m else text


def strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", text)


def referenced_paths(text: str):
    """Every `crate::a::b` / `super::a` path, with `use crate::{a, b::c}` groups expanded."""
    for m in USE_GROUP_RE.finditer(text):
        for item in re.split(r",", m.group(2)):
            item = item.strip().split("::{")[0].strip()
            if item and item not in ("self", "*"):
                yield m.group(1), tuple(item.split("::"))
    for m in PATH_RE.finditer(text):
        yield m.group(1), tuple(p for p in m.group(2).split("::") if p)


def resolve(modules, here, head, path):
    """The defining file's module for a path seen in module `here`, or None."""
    if head == "crate":
        base = ()
    else:
        base = here[:-1] if here else ()
        while path and path[0] == "super":
            base, path = base[:-1], path[1:]
    full = base + path
    for n in range(len(full), -1, -1):
        if full[:n] in modules:
            return full[:n]
    return None


def cycles_in(src: Path):
    files = {module_of(src, f): f for f in src.rglob("*.rs")}
    edges = {m: set() for m in files}
    for mod, file in files.items():
        text = strip_comments(strip_tests(file.read_text(errors="replace")))
        for head, path in referenced_paths(text):
            target = resolve(files, mod, head, path)
            if target is not None and target != mod and target != ():
                edges[mod].add(target)
    return [sorted(files[m].relative_to(src.parent.parent) for m in c) for c in scc(edges)]


def scc(edges):
    """Tarjan's strongly connected components with two or more members."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    found = 0
    for src in crate_roots(root):
        for comp in cycles_in(src):
            found += 1
            print(f"circle of {len(comp)}: " + ", ".join(str(p) for p in comp))
    print(f"{found} circle(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
