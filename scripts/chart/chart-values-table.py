#!/usr/bin/env python3
"""Prints the values table of helm/vx-bridge/README.md from values.yaml (helm-docs style: a
`# --` comment, and the `#` lines after it, describe the key below). One row per leaf key;
a mapping with its own `# --` comment also gets a row. chart-check.sh checks that the
README's table (between the VALUES-TABLE markers) equals this output.
Usage: chart-values-table.py VALUES.yaml [README.md]   (with README.md: rewrite its table)
"""
import json
import re
import sys

import yaml

KEY = re.compile(r"^(\s*)([A-Za-z0-9_.\-/]+):(\s.*|)$")
BEGIN, END = "<!-- VALUES-TABLE:BEGIN -->", "<!-- VALUES-TABLE:END -->"


def rows(path):
    text = open(path).read()
    data = yaml.safe_load(text)
    items, stack, desc, skip_below = [], [], [], None   # stack: (indent, key)
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("# --"):
            desc = [s[4:].strip()]; continue
        if s.startswith("#"):
            if desc: desc.append(s[1:].strip())
            continue
        m = KEY.match(line)
        if not m or s.startswith("-"):
            desc = []; continue
        indent = len(m.group(1))
        if skip_below is not None and indent > skip_below:
            continue
        skip_below = None
        while stack and stack[-1][0] >= indent:
            stack.pop()
        keys = [k for _, k in stack] + [m.group(2)]
        value = data
        for k in keys:
            value = value[k]
        block = isinstance(value, dict) and value and not m.group(3).strip().startswith("{")
        items.append((".".join(keys), value, " ".join(desc), block))
        if block:
            stack.append((indent, m.group(2)))
        else:
            skip_below = indent
        desc = []
    # A documented mapping none of whose keys is documented is one row (e.g. resources).
    documented = [k for k, _, d, _ in items if d]
    out, folded = [], None
    for key, value, desc, block in items:
        if folded and key.startswith(folded + "."):
            continue
        folded = None
        if block and desc and not any(d.startswith(key + ".") for d in documented):
            block, folded = False, key
        if block:
            if desc:
                out.append((key, "object", "", desc))
            continue
        kind = {bool: "bool", int: "int", float: "float", str: "string", list: "list",
                dict: "object", type(None): "null"}[type(value)]
        out.append((key, kind, json.dumps(value, ensure_ascii=False), desc))
    return out


def table(path):
    lines = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for key, kind, default, desc in rows(path):
        default = f"`{default}`" if default else ""
        lines.append(f"| `{key}` | {kind} | {default.replace('|', '&#124;')} | {desc.replace('|', '&#124;')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    t = table(sys.argv[1])
    if len(sys.argv) > 2:
        readme = open(sys.argv[2]).read()
        head, rest = readme.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        open(sys.argv[2], "w").write(f"{head}{BEGIN}\n{t}{END}{tail}")
    else:
        sys.stdout.write(t)
