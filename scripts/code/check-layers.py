#!/usr/bin/env python3
"""Module layering check of vx-bridge: import cycles and the rules of how the parts meet.

Reads src/**/*.rs as text (Python 3 standard library only; well under a second), builds the graph
of top-level modules (src/<m>.rs or src/<m>/, plus the binary src/main.rs) from
`crate::…`, `super::…` and, in the binaries, `vx_bridge::…` paths, and checks:

  cycles  no import cycle between top-level modules;
  rule 1  auth, schema and event use no NATS, HTTP server or HTTP client crate, nor reach
          (through any chain of imports) a module that does;
  rule 2  ingress never reaches the upstream client; upstream never reaches ingress or the
          publisher (`nats`);
  rule 3  only main.rs and the cli module read the environment (std::env::var, var_os, vars, vars_os, and
          set_var/remove_var); the compile-time env!/option_env! are fine;
  rule 4  status and ingress meet only in config, event types, nats, pii and telemetry:
          neither reaches the other, and every module both import is in that set, or is one of
          the pure helpers both need (strict JSON, schemas, the timestamp format), which the
          check holds to importing only each other and no NATS/HTTP crate;
  rule 5  the reconciler sits above what it uses: none of sessions, upstream, event, nats,
          telemetry, config (nor the pure helpers) reaches reconcile, and reconcile never
          reaches the ingress.

Comments, string literals and `#[cfg(test)]` items (the `mod tests` blocks) are left out: tests
may cross layers. There are no known violations: every finding fails the check.

Usage: scripts/code/check-layers.py [--root DIR] [--graph] [--self-test]
  --root DIR   the crate to check (default: this repository)
  --graph      print the module graph (imports, and the NATS/HTTP crates each module uses)
  --self-test  run the checker on small fake trees with known violations; exit 0 if it finds
               exactly those
Exit status: 0 clean, 1 violations, 2 usage or I/O error.
"""

import argparse
import os
import re
import sys
import tempfile
import time
from collections import defaultdict, deque

# --- The rules, as data -------------------------------------------------------------------------

# Crates by what they are. A module "wraps" NATS or HTTP when it uses one of these directly.
NATS_CRATES = {"async_nats"}
HTTP_SERVER_CRATES = {"axum", "hyper", "hyper_util", "tower", "tower_http"}
HTTP_CLIENT_CRATES = {"reqwest"}
IO_CRATES = NATS_CRATES | HTTP_SERVER_CRATES | HTTP_CLIENT_CRATES

# Rule 1: these use no IO_CRATES, and reach no module that does.
PURE = {"auth", "schema", "event"}

# Rule 2: (from, to): `from` never reaches `to`, through any chain of imports.
PUBLISHER = {"nats"}  # the publisher lives in `nats`
UPSTREAM_CLIENT = {"upstream"}
NEVER_REACHES = [("ingress", m) for m in sorted(UPSTREAM_CLIENT)] + [
    ("upstream", m) for m in ["ingress", *sorted(PUBLISHER)]
]

# Rule 3: the only files that may read the environment (paths under src/): the binary and the
# command line (`cli.rs` or `cli/`).
ENV_READERS = {"main.rs", "cli.rs"}
ENV_READER_DIRS = ("cli/",)
ENV_READ = re.compile(r"\benv\s*::\s*(var|var_os|vars|vars_os|set_var|remove_var)\b")
ENV_IMPORT = re.compile(r"\buse\s+std\s*::\s*env\s*::\s*\{?[^;]*\b(var|var_os|vars|vars_os|set_var|remove_var)\b")

# Rule 4: where status and ingress may meet.
SERVICES = ("status", "ingress")
# `pii`: the ingress seals personal data with it, the status service opens and erases with it.
MEETING_PLACES = {"config", "event", "telemetry", "pii"} | PUBLISHER
SHARED_HELPERS = {"json", "schema", "timestamp", "secret"}

# Rule 5: the reconciler's place. (from, to): `from` never reaches `to`.
RECONCILER = "reconcile"
BELOW_RECONCILER = ["sessions", "upstream", "event", "nats", "telemetry", "config", "auth", "json", "schema", "timestamp", "secret"]
RECONCILER_NEVER_REACHES = [(m, RECONCILER) for m in BELOW_RECONCILER] + [(RECONCILER, "ingress")]

# --- Reading Rust -------------------------------------------------------------------------------


RAW_STRING = re.compile(r'b?r(#*)"')
CHAR_LITERAL = re.compile(r"'(\\(u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'\n])'")


def blank_comments_and_strings(text):
    """The text with comments and string/char literals replaced by spaces (newlines kept)."""
    out = list(text)
    i, n = 0, len(text)

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    def after_ident(k):
        return k > 0 and (text[k - 1].isalnum() or text[k - 1] == "_")

    while i < n:
        c = text[i]
        raw = RAW_STRING.match(text, i) if c in "br" and not after_ident(i) else None
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
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
            blank(i, j)
            i = j
        elif raw:
            hashes = raw.group(1)
            end = text.find('"' + hashes, raw.end())
            j = n if end < 0 else end + 1 + len(hashes)
            blank(i, j)
            i = j
        elif c == '"' or (text.startswith('b"', i) and not after_ident(i)):
            j = i + (2 if c == "b" else 1)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(i, j + 1)
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{7f}', '"'), else a lifetime ('a).
            m = CHAR_LITERAL.match(text, i)
            if m:
                blank(i, m.end())
                i = m.end()
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def matching_brace(text, open_at):
    """Index just past the `}` that closes the `{` at `open_at` (text already blanked)."""
    depth = 0
    for j in range(open_at, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j + 1
    return len(text)


CFG_TEST = re.compile(r"#\s*\[\s*cfg\s*\(\s*(test|all\s*\(\s*test\b[^\]]*)\s*\)\s*\]")


def blank_test_items(text):
    """Blanks every item under `#[cfg(test)]` (a `mod tests { … }`, a `use`, a fn …)."""
    out = list(text)
    for m in CFG_TEST.finditer(text):
        i = m.end()
        # The item ends at its first `;` or its first `{ … }`, whichever comes first.
        semi = text.find(";", i)
        brace = text.find("{", i)
        if brace >= 0 and (semi < 0 or brace < semi):
            end = matching_brace(text, brace)
        else:
            end = len(text) if semi < 0 else semi + 1
        for k in range(m.start(), end):
            if out[k] != "\n":
                out[k] = " "
    return "".join(out)


IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
PATH_START = re.compile(r"(?<![A-Za-z0-9_:])((?:crate|vx_bridge)\s*::|(?:super\s*::\s*)+)")


def first_segments(text, at):
    """The first path segment(s) after `at`: one identifier, or each item of a `{…}` group."""
    rest = text[at:]
    m = re.match(r"\s*(" + IDENT + ")", rest)
    if m:
        return [m.group(1)]
    m = re.match(r"\s*\{", rest)
    if not m:
        return []
    end = matching_brace(text, at + m.end() - 1)
    inner = text[at + m.end() : end - 1]
    items, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    segs = []
    for item in items:
        m = re.match(r"\s*(" + IDENT + ")", item)
        if m:
            segs.append(m.group(1))
    return segs


def line_of(text, offset):
    return text.count("\n", 0, offset) + 1


class Source:
    """One .rs file: which top-level module it belongs to and its module path."""

    def __init__(self, rel, text):
        self.rel = rel  # path under src/, with `/`
        self.raw = text
        self.code = blank_test_items(blank_comments_and_strings(text))
        parts = rel[:-3].split("/")
        if parts[-1] == "mod":
            parts = parts[:-1]
        self.binary = rel == "main.rs"
        if rel == "lib.rs":
            self.top, self.path = None, []
        elif self.binary:
            self.top, self.path = rel[:-3], []
        else:
            self.top, self.path = parts[0], parts

    def module_refs(self, modules):
        """(module, line) for every path into another top-level module of the library."""
        refs = []
        for m in PATH_START.finditer(self.code):
            head = re.sub(r"\s", "", m.group(1))
            if head.startswith("vx_bridge") and not self.binary:
                continue
            if head.startswith("crate") and self.binary:
                continue  # a binary's own crate
            ups = head.count("super")
            if ups:
                base = self.path[: max(len(self.path) - ups, 0)]
                if base:  # still inside a module: only the top-level one counts
                    refs.append((base[0], line_of(self.code, m.start())))
                    continue
            for seg in first_segments(self.code, m.end()):
                if seg in modules:
                    refs.append((seg, line_of(self.code, m.start())))
        return refs

    def crate_refs(self, crates):
        """(crate, line) for every path into one of `crates`."""
        pat = re.compile(r"(?<![A-Za-z0-9_:])(" + "|".join(sorted(crates)) + r")\s*(::|;)")
        return [(m.group(1), line_of(self.code, m.start())) for m in pat.finditer(self.code)]

    def env_reads(self):
        lines = {line_of(self.code, m.start()) for m in ENV_READ.finditer(self.code)}
        lines |= {line_of(self.code, m.start()) for m in ENV_IMPORT.finditer(self.code)}
        return sorted(lines)


def load(root):
    src = os.path.join(root, "src")
    if not os.path.isdir(src):
        raise OSError(f"no src/ under {root}")
    sources = []
    for dirpath, _, files in os.walk(src):
        for f in files:
            if f.endswith(".rs"):
                full = os.path.join(dirpath, f)
                rel = os.path.relpath(full, src).replace(os.sep, "/")
                with open(full, encoding="utf-8") as fh:
                    sources.append(Source(rel, fh.read()))
    sources.sort(key=lambda s: s.rel)
    return sources


# --- The graph and the checks -------------------------------------------------------------------


class Graph:
    def __init__(self, sources):
        self.sources = sources
        self.modules = {s.top for s in sources if s.top and not s.binary}
        self.nodes = self.modules | {s.top for s in sources if s.binary}
        # edges[a][b] = "file:line" of the first reference
        self.edges = defaultdict(dict)
        # uses[m][crate] = "file:line"
        self.uses = defaultdict(dict)
        for s in sources:
            if s.top is None:
                continue
            for mod, line in s.module_refs(self.modules):
                if mod != s.top:
                    self.edges[s.top].setdefault(mod, f"src/{s.rel}:{line}")
            for crate, line in s.crate_refs(IO_CRATES):
                self.uses[s.top].setdefault(crate, f"src/{s.rel}:{line}")

    def reach_path(self, start, goal_fn, back_to=None, within=None):
        """Shortest import chain from `start` to a module for which goal_fn is true, or None.
        With `back_to`, the chain may end there too (a cycle); `within` bounds the search."""
        prev, queue = {start: None}, deque([start])
        while queue:
            cur = queue.popleft()
            for nxt in sorted(self.edges.get(cur, {})):
                if nxt == back_to or (nxt not in prev and goal_fn(nxt)):
                    path, node = [nxt], cur
                    while node is not None:
                        path.append(node)
                        node = prev[node]
                    return path[::-1]
                if nxt not in prev and (within is None or nxt in within):
                    prev[nxt] = cur
                    queue.append(nxt)
        return None

    def describe(self, path):
        return " -> ".join(path) + "  (" + "; ".join(
            f"{a} -> {b} at {self.edges[a][b]}" for a, b in zip(path, path[1:])
        ) + ")"

    def sccs(self):
        """Strongly connected components with more than one module (Tarjan)."""
        index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

        def visit(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in sorted(self.edges.get(v, {})):
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

        sys.setrecursionlimit(10000)
        for v in sorted(self.nodes):
            if v not in index:
                visit(v)
        return sorted(out)


def check(root):
    """All findings as (check, key, message)."""
    g = Graph(load(root))
    findings = []

    for comp in g.sccs():
        cycle = g.reach_path(comp[0], lambda m: False, back_to=comp[0], within=set(comp))
        findings.append(("cycle", " ".join(comp), "import cycle: " + g.describe(cycle)))

    wrappers = set(g.uses)
    for m in sorted(PURE & g.modules):
        for crate, where in sorted(g.uses.get(m, {}).items()):
            findings.append(("rule 1", f"{m} {crate}", f"{m} uses {crate} at {where}"))
        path = g.reach_path(m, lambda x: x in wrappers)
        if path:
            crates = ", ".join(sorted(g.uses[path[-1]]))
            findings.append(
                ("rule 1", f"{m} {path[-1]}", f"{m} reaches {path[-1]} (which uses {crates}): {g.describe(path)}")
            )

    for a, b in NEVER_REACHES:
        if a in g.modules:
            path = g.reach_path(a, lambda x, b=b: x == b)
            if path:
                findings.append(("rule 2", f"{a} {b}", f"{a} reaches {b}: {g.describe(path)}"))

    for s in g.sources:
        if s.rel in ENV_READERS or s.rel.startswith(ENV_READER_DIRS):
            continue
        lines = s.env_reads()
        if lines:
            at = ", ".join(f"src/{s.rel}:{n}" for n in lines)
            findings.append(("rule 3", f"src/{s.rel}", f"reads the environment (only main and cli may): {at}"))

    for a, b in RECONCILER_NEVER_REACHES:
        if a in g.modules and b in g.modules:
            path = g.reach_path(a, lambda x, b=b: x == b)
            if path:
                findings.append(("rule 5", f"{a} {b}", f"{a} reaches {b}: {g.describe(path)}"))

    x, y = SERVICES
    if x in g.modules and y in g.modules:
        for a, b in [(x, y), (y, x)]:
            path = g.reach_path(a, lambda m, b=b: m == b)
            if path:
                findings.append(("rule 4", f"{a} {b}", f"{a} reaches {b}: {g.describe(path)}"))
        shared = set(g.edges.get(x, {})) & set(g.edges.get(y, {}))
        for m in sorted(shared - MEETING_PLACES - SHARED_HELPERS):
            findings.append(
                ("rule 4", f"shared {m}", f"{x} and {y} both import {m} ({g.edges[x][m]}; {g.edges[y][m]}); they may meet only in {', '.join(sorted(MEETING_PLACES))}")
            )
        for m in sorted(shared & SHARED_HELPERS):
            for crate, where in sorted(g.uses.get(m, {}).items()):
                findings.append(("rule 4", f"helper {m} {crate}", f"shared helper {m} uses {crate} at {where}"))
            for dep, where in sorted(g.edges.get(m, {}).items()):
                if dep not in SHARED_HELPERS:
                    findings.append(
                        ("rule 4", f"helper {m} {dep}", f"shared helper {m} imports {dep} at {where}: helpers import only each other")
                    )
    return g, findings


def report(root, out=sys.stdout):
    """Prints the findings; 0 when there are none."""
    started = time.monotonic()
    g, failures = check(root)
    n_edges = sum(len(v) for v in g.edges.values())
    print(f"check-layers: {len(g.sources)} files, {len(g.nodes)} modules, {n_edges} imports between them", file=out)
    for c, _, msg in failures:
        print(f"  FAIL {c}: {msg}", file=out)
    ok = not failures
    checks = "cycles, rule 1 (pure modules), rule 2 (ingress/upstream), rule 3 (environment), rule 4 (status/ingress), rule 5 (reconciler)"
    verdict = "ok" if ok else f"{len(failures)} problem(s)"
    print(f"check-layers: {verdict} ({checks}; {time.monotonic() - started:.2f}s)", file=out)
    return 0 if ok else 1


# --- Self-test ----------------------------------------------------------------------------------


def self_test():
    """Runs the checks on small fake trees; each must give exactly the findings expected."""
    clean = {
        "lib.rs": "pub mod auth; pub mod config; pub mod event; pub mod ingress; pub mod status;\npub use app::run;\n",
        "main.rs": 'fn main() { let _ = std::env::var("X"); vx_bridge::config::load(); }\n',
        "cli/mod.rs": "pub mod run;\npub fn args() { let _ = std::env::vars(); }\n",
        "cli/run.rs": "fn file() { let _ = std::env::var_os(\"X\"); }\n",
        "config.rs": "use crate::secret::Secret;\npub fn name() -> &'static str { env!(\"CARGO_PKG_NAME\") }\n",
        "secret.rs": "pub struct Secret;\n",
        "auth/mod.rs": "pub mod hmac;\nuse crate::config::Config;\nuse super::secret::Secret;\n",
        "auth/hmac.rs": "use super::Verifier; // crate::ingress in a comment\nconst S: &str = \"crate::status::x std::env::var\";\n",
        "event.rs": "use crate::{auth::Verified, json};\nlet c = '\"'; let r = r#\"crate::nats \"#;\nfn f<'a>(x: &'a str) {}\n",
        "json.rs": "pub fn parse_strict() {}\n",
        "schema.rs": "pub struct Schemas;\n",
        "nats/mod.rs": "use async_nats::Client;\nuse crate::event::Event;\n",
        "ingress.rs": "use axum::Router;\nuse crate::{config::Config, event::{self, Event}, json, nats::Publisher};\n"
        "#[cfg(test)]\nmod tests {\n    use crate::status::x;\n    fn f() { std::env::var(\"A\"); }\n}\n",
        "status/mod.rs": "pub mod request;\nuse crate::upstream::Client;\nuse crate::nats::Publisher;\n",
        "status/request.rs": "use super::super::json::parse_strict;\nuse crate::config::Config;\n",
        "upstream/mod.rs": "use reqwest::Client;\nuse crate::event::TraceContext;\n",
    }
    cases = [
        ("clean", {}, set()),
        ("cycle of three", {"secret.rs": "use crate::auth::Verifier;\n"}, {("cycle", "auth config secret")}),
        ("cycle of two", {"config.rs": "fn f() { crate::auth::Verifier::new(); }\n"}, {("cycle", "auth config")}),
        ("env read", {"event.rs": "use std::env;\nfn f() { env::var_os(\"PATH\"); }\n"}, {("rule 3", "src/event.rs")}),
        ("env import", {"json.rs": "use std::env::{args, vars};\n"}, {("rule 3", "src/json.rs")}),
        ("pure uses nats", {"event.rs": "fn f(h: async_nats::HeaderMap) {}\n"}, {("rule 1", "event async_nats")}),
        ("pure reaches a wrapper", {"schema.rs": "use crate::upstream::Client;\n"}, {("rule 1", "schema upstream")}),
        ("ingress reaches upstream", {"ingress.rs": "use crate::health::Probe;\n", "health.rs": "use crate::upstream::x;\n"}, {("rule 2", "ingress upstream")}),
        ("a shared helper imports more than helpers", {"json.rs": "use crate::config::Config;\n"}, {("rule 4", "helper json config")}),
        ("upstream reaches the publisher", {"upstream/mod.rs": "use crate::nats::x;\n"}, {("rule 2", "upstream nats")}),
        ("a module beside cli reads the environment", {"clix.rs": "fn f() { std::env::var(\"A\"); }\n"}, {("rule 3", "src/clix.rs")}),
        ("status imports ingress", {"status/request.rs": "use crate::ingress::Ingress;\n"}, {("rule 4", "status ingress")}),
        ("status and ingress share a module", {"health.rs": "\n", "status/mod.rs": "use crate::health::x;\n", "ingress.rs": "use crate::health::y;\n"}, {("rule 4", "shared health")}),
        ("the reconciler uses what is below it", {"reconcile/mod.rs": "use crate::upstream::Client;\nuse crate::nats::Publisher;\n", "status/request.rs": "use crate::reconcile::Registrar;\n"}, set()),
        ("something below imports the reconciler", {"reconcile/mod.rs": "use crate::upstream::Client;\n", "sessions/mod.rs": "use crate::reconcile::Registrar;\n"}, {("rule 5", "sessions reconcile")}),
        ("the reconciler reaches the ingress", {"reconcile/mod.rs": "use crate::ingress::Ingress;\n"}, {("rule 5", "reconcile ingress")}),
    ]
    failed = 0
    for name, change, want in cases:
        tree = dict(clean)
        tree.update(change)
        with tempfile.TemporaryDirectory() as d:
            for rel, text in tree.items():
                p = os.path.join(d, "src", rel)
                os.makedirs(os.path.dirname(p), exist_ok=True)
                with open(p, "w", encoding="utf-8") as f:
                    f.write(text)
            _, findings = check(d)
            got = {(c, k) for c, k, _ in findings}
            with open(os.devnull, "w") as sink:
                code = report(d, out=sink)
        if got != want or code != (1 if want else 0):
            failed += 1
            print(
                f"self-test {name}: FAILED: want {sorted(want)} (exit {1 if want else 0}), got {sorted(got)}"
                f" (exit {code})"
            )
            for _, _, msg in findings:
                print(f"    {msg}")
        else:
            print(f"self-test {name}: ok")
    print(f"check-layers self-test: {len(cases) - failed}/{len(cases)} ok")
    return 1 if failed else 0


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(here)), help="the crate to check")
    ap.add_argument("--self-test", action="store_true", help="check the checker on fake trees")
    ap.add_argument("--graph", action="store_true", help="print the module graph and exit")
    args = ap.parse_args()
    try:
        if args.self_test:
            return self_test()
        if args.graph:
            g = Graph(load(args.root))
            for m in sorted(g.nodes):
                uses = " ".join(sorted(g.uses.get(m, {})))
                print(f"{m} -> {' '.join(sorted(g.edges.get(m, {})))}" + (f"  [uses {uses}]" if uses else ""))
            return 0
        return report(args.root)
    except OSError as e:
        print(f"check-layers: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
