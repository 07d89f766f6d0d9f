#!/usr/bin/env python3
"""Chart/binary drift test: every Deployment the chart renders must start with a config the
binary accepts.

For each Deployment in a rendered manifest file, this rebuilds the container's view of its
files under a temporary root: the ConfigMap key and every secret file it mounts, with the
content of the rendered Secret (or, for an `existingSecret` the chart does not render, a
placeholder: the binary checks those files exist and are non-empty, not what they hold; the
KEK file, which it parses, gets a well-formed all-zero KEK), and
the result schema (from a rendered ConfigMap, or for an `existingConfigMap` an accept-all `{}`).
Absolute mount paths in the TOML and in VXB_* env values are rewritten to that root, and
`vx-bridge check-config --config ROOT/<path from args>` runs with only the container's
plain VXB_* variables. Secret contents are written to the temp dir only, never printed.

Exit 0 when every Deployment passes; 1 otherwise.
Usage: chart-drift.py VXB_BIN MANIFEST.yaml
"""
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib

import yaml

PLACEHOLDER = "placeholder-for-existing-secret\n"
# For the KEK file (`keys.kek_file`) from an existingSecret: the binary parses it (one
# `id:base64-of-32-bytes` per line), so the placeholder is a well-formed, all-zero KEK.
KEK_PLACEHOLDER = "placeholder:" + base64.b64encode(bytes(32)).decode() + "\n"
# For a result schema from an existingConfigMap (volume `schema`): a JSON Schema that compiles.
SCHEMA_PLACEHOLDER = "{}\n"


def secret_data(secret):
    out = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    out.update(secret.get("stringData") or {})
    return out


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def volume_files(vol, configmaps, secrets, notes):
    """Yields (relative path, content) of a volume: configMap or projected/secret sources."""
    sources = []
    if "configMap" in vol:
        sources.append(("configMap", vol["configMap"]))
    if "secret" in vol:
        s = dict(vol["secret"]); s["name"] = s.pop("secretName")
        sources.append(("secret", s))
    for src in (vol.get("projected") or {}).get("sources", []):
        for kind in ("configMap", "secret"):
            if kind in src:
                sources.append((kind, src[kind]))
    for kind, ref in sources:
        table = configmaps if kind == "configMap" else secrets
        data = table.get(ref["name"])
        placeholder = PLACEHOLDER
        if data is None:
            if kind == "configMap" and vol["name"] != "schema":
                raise SystemExit(f"configMap {ref['name']} is not rendered")
            if kind == "configMap":
                placeholder = SCHEMA_PLACEHOLDER
                notes.add(f"existingConfigMap {ref['name']}: placeholder schema")
            else:
                notes.add(f"existingSecret {ref['name']}: placeholder content")
        items = ref.get("items") or [{"key": k, "path": k} for k in (data or {})]
        for it in items:
            if data is not None and it["key"] not in data:
                raise SystemExit(f"{kind} {ref['name']} has no key {it['key']}")
            yield it["path"], (data[it["key"]] if data is not None else placeholder)


def check_deployment(binary, dep, configmaps, secrets):
    pod = dep["spec"]["template"]["spec"]
    [c] = [c for c in pod["containers"] if c["name"] == "vx-bridge"]
    args = c.get("args", [])
    config_path = args[args.index("--config") + 1]
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    notes = set()
    root = tempfile.mkdtemp(prefix="vxb-drift-")
    try:
        mounts = c.get("volumeMounts", [])
        for m in mounts:
            files = dict(volume_files(vols[m["name"]], configmaps, secrets, notes))
            if "subPath" in m:
                write(root + m["mountPath"], files[m["subPath"]])
            else:
                for rel, text in files.items():
                    write(os.path.join(root + m["mountPath"], rel), text)
        # Longest mount path first, so /a/b is rewritten before /a.
        def reroot(text):
            for mp in sorted((m["mountPath"] for m in mounts), key=len, reverse=True):
                text = text.replace(f'"{mp}', f'"{root}{mp}')
            return text
        cfg = root + config_path
        with open(cfg) as f:
            toml = f.read()
        kek = (tomllib.loads(toml).get("keys") or {}).get("kek_file")
        if kek and os.path.isfile(root + kek) and open(root + kek).read() == PLACEHOLDER:
            write(root + kek, KEK_PLACEHOLDER)
        write(cfg, reroot(toml))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = reroot(f'"{e["value"]}')[1:]
            elif e["name"].startswith("VXB_"):
                notes.add(f"env {e['name']} uses valueFrom: not checked")
        p = subprocess.run([binary, "check-config", "--config", cfg], env=env,
                           capture_output=True, text=True, timeout=30)
        # stdout is the effective config with secrets redacted; only the verdict line is shown.
        line = (p.stderr.strip().splitlines() or [""])[-1].replace(root, "")
        if p.returncode == 0:
            return "PASS", line, notes
        return "FAIL", f"exit {p.returncode}: {line}", notes
    finally:
        shutil.rmtree(root)


def main():
    binary, manifest = sys.argv[1], sys.argv[2]
    docs = [d for d in yaml.safe_load_all(open(manifest)) if d]
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"]: secret_data(d) for d in docs if d["kind"] == "Secret"}
    deps = [d for d in docs if d["kind"] == "Deployment"]
    if not deps:
        print("  drift: no Deployment rendered"); return 1
    failed = 0
    for dep in deps:
        verdict, line, notes = check_deployment(binary, dep, configmaps, secrets)
        failed += verdict == "FAIL"
        extra = f" [{'; '.join(sorted(notes))}]" if notes else ""
        print(f"  drift {verdict:5} {dep['metadata']['name']}: {line}{extra}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
