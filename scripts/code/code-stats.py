#!/usr/bin/env python3
"""Code-size figures for refactor notes: the longest non-test functions, the largest non-test
files, and #[source]/#[from] counts, over src/ (and the given roots). Test modules
(`#[cfg(test)] mod ... { }`) are left out. Usage: scripts/code/code-stats.py [--top N] [ROOT...]"""
import re, sys, pathlib

def strip_tests(lines):
    out, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "#[cfg(test)]" and i + 1 < len(lines) and re.match(r"\s*mod\s+\w+\s*\{", lines[i + 1]):
            depth, j = 0, i + 1
            while j < len(lines):
                depth += lines[j].count("{") - lines[j].count("}")
                j += 1
                if depth <= 0:
                    break
            i = j
            continue
        out.append((i + 1, lines[i]))
        i += 1
    return out

FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")

def functions(path, numbered):
    res = []
    for k, (no, line) in enumerate(numbered):
        m = FN.match(line)
        if not m:
            continue
        depth, started, end = 0, False, None
        for no2, l2 in numbered[k:]:
            code = re.sub(r'"(\\.|[^"\\])*"', '""', l2.split("//")[0])
            if not started and ";" in code and "{" not in code:
                break
            depth += code.count("{") - code.count("}")
            if "{" in code:
                started = True
            if started and depth <= 0:
                end = no2
                break
        if end:
            res.append((end - no + 1, f"{path}:{no}", m.group(6)))
    return res

def main():
    args = sys.argv[1:]
    top = 5
    if args[:1] == ["--top"]:
        top, args = int(args[1]), args[2:]
    roots = args or ["src"]
    files, fns, src, frm = [], [], 0, 0
    for root in roots:
        for p in sorted(pathlib.Path(root).rglob("*.rs")):
            lines = p.read_text().splitlines()
            numbered = strip_tests(lines)
            files.append((len(numbered), str(p)))
            fns += functions(str(p), numbered)
            text = "\n".join(l for _, l in numbered)
            src += text.count("#[source]")
            frm += text.count("#[from]")
    print(f"non-test lines: {sum(n for n, _ in files)} in {len(files)} files")
    print(f"longest functions (lines):")
    for n, where, name in sorted(fns, reverse=True)[:top]:
        print(f"  {n:4d}  {name}  {where}")
    print(f"largest files (non-test lines):")
    for n, p in sorted(files, reverse=True)[:top]:
        print(f"  {n:4d}  {p}")
    print(f"#[source]: {src}  #[from]: {frm}")

main()
