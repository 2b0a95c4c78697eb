#!/usr/bin/env python3
"""Finds import cycles between the modules of one Rust crate.

    scripts/module-cycles.py engine/src [server/src ...]

Prints every cycle between sibling modules (`config -> snapshot_schedule -> config`, or
`routes::admin -> routes::health -> routes::admin`) with one `use` site per edge, and
exits 1 if there is any. A module using its own parent or child is not a cycle: a child
is part of its parent.

How it reads the code (no compiler needed, so CI can run it in a second):
- a file's module path comes from its place under `src/` (`a.rs` and `a/mod.rs` are `a`,
  `a/b.rs` is `a::b`; `lib.rs`/`main.rs` are the root);
- comments, string literals and `#[cfg(test)]` modules are ignored (test code may
  reach anywhere);
- every `crate::…`, `super::…` and `self::…` path is a use of the longest module prefix
  it names, `use crate::{a::X, b::Y}` groups included; a name the root re-exports
  (`pub use a::X;` in lib.rs) counts as a use of `a`.
"""

import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def module_path(src: Path, file: Path) -> tuple:
    rel = file.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts in (["lib"], ["main"]):
        return ()
    return tuple(parts)


def strip_comments_and_strings(text: str) -> str:
    """Blanks comments and string/char literals, keeping line numbers."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not re.match(r"\w", text[i - 1])):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append("\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append("\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4] + "    "):
            m = re.match(r"'(\\[^']*|[^\\'])'", text[i:])
            i += len(m.group(0)) if m else 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_test_modules(text: str) -> str:
    """Blanks `#[cfg(test)] mod name { … }` blocks, keeping line numbers."""
    pattern = re.compile(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+" + IDENT + r"\s*\{")
    while True:
        m = pattern.search(text)
        if not m:
            return text
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        text = text[:m.start()] + "\n" * text.count("\n", m.start(), j) + text[j:]


def expand_use_tree(prefix: str, tree: str):
    """`a::{b::X, c}` under `prefix` -> ['prefix::a::b::X', 'prefix::a::c']."""
    tree = tree.strip()
    brace = tree.find("{")
    if brace < 0:
        yield (prefix + "::" + tree) if prefix else tree
        return
    head = tree[:brace].rstrip(":").strip()
    body = tree[brace + 1:tree.rfind("}")]
    base = "::".join(p for p in (prefix, head) if p)
    depth, start = 0, 0
    for k, ch in enumerate(body + ","):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            item = body[start:k].strip()
            start = k + 1
            if item:
                yield from expand_use_tree(base, item)


def references(text: str):
    """Yields (line, path) for every crate-relative path in the code."""
    for m in re.finditer(r"\b(crate|super|self)::\{", text):
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        line = text.count("\n", 0, m.start()) + 1
        for path in expand_use_tree(m.group(1), "{" + text[m.end():j]):
            yield line, path
    for m in re.finditer(r"\b(crate|super|self)((?:::(?:super|" + IDENT + r"))+)", text):
        line = text.count("\n", 0, m.start()) + 1
        yield line, m.group(1) + m.group(2)


def resolve(current: tuple, path: str, modules: set, reexports: dict):
    parts = [p for p in re.split(r"\s*::\s*", path) if p]
    if parts[0] == "crate":
        base, rest = (), parts[1:]
    else:
        base = current
        rest = parts
        while rest and rest[0] in ("self", "super"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
    target = base
    for seg in rest:
        if target + (seg,) in modules:
            target = target + (seg,)
        else:
            if target == () and seg in reexports:
                target = reexports[seg]
            break
    return target


def root_reexports(root_text: str, modules: set) -> dict:
    found = {}
    for m in re.finditer(r"pub\s+use\s+([^;]+);", root_text):
        for path in expand_use_tree("", m.group(1)):
            segs = [s.strip() for s in path.split("::")]
            if segs and segs[0] == "crate":
                segs = segs[1:]
            name = segs[-1].split(" as ")[-1].strip()
            if segs and (segs[0],) in modules:
                found[name] = (segs[0],)
    return found


def cycles(graph: dict):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def check(src: Path) -> int:
    files = sorted(src.rglob("*.rs"))
    modules = {module_path(src, f) for f in files}
    texts = {f: drop_test_modules(strip_comments_and_strings(f.read_text())) for f in files}
    root = next((f for f in files if module_path(src, f) == ()), None)
    reexports = root_reexports(texts[root], modules) if root else {}

    graph, sites = {}, {}
    for f in files:
        current = module_path(src, f)
        for line, path in references(texts[f]):
            target = resolve(current, path, modules, reexports)
            common = 0
            while common < min(len(current), len(target)) and current[common] == target[common]:
                common += 1
            if common == len(current) or common == len(target):
                continue  # the same module, an ancestor or a descendant
            a, b = current[:common + 1], target[:common + 1]
            graph.setdefault(a, set()).add(b)
            sites.setdefault((a, b), f"{f.relative_to(src.parent)}:{line} {path}")

    found = cycles(graph)
    name = lambda m: "::".join(m)
    for comp in found:
        print(f"{src}: cycle between {', '.join(name(m) for m in comp)}")
        members = set(comp)
        for a in comp:
            for b in sorted(graph.get(a, ())):
                if b in members:
                    print(f"    {name(a)} -> {name(b)}  ({sites[(a, b)]})")
    if not found:
        print(f"{src}: no import cycles between its {len(modules)} modules")
    return 1 if found else 0


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    status = 0
    for arg in argv[1:]:
        src = Path(arg)
        if not src.is_dir():
            print(f"{arg}: not a directory (give a crate's src/)", file=sys.stderr)
            return 2
        status |= check(src)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
