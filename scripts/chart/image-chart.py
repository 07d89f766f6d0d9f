#!/usr/bin/env python3
"""What the chart asks of the container, for scripts/chart/image-check.sh to run the image that way.

Usage: image-chart.py RENDERED.yaml OUT_DIR SECRETS.json

Reads the main Deployment of a `helm template` output and writes under OUT_DIR what its pod
would see: the config file of its ConfigMap key, and each projected secret file, made from
SECRETS.json ({"<secret name>/<key>": "<content>"}: what `kubectl create secret` would hold).
A secret the chart mounts that SECRETS.json lacks is an error: the documented install commands
and the chart disagree. Prints one JSON object on stdout: image, args, ports, probes, security
contexts, grace period, memory limit, env, and the host/container paths of the mounts.
"""
import json
import os
import sys
import tomllib

import yaml  # from the chart tools' venv (yamllint depends on PyYAML)


def main():
    rendered, out, secrets_json = sys.argv[1:4]
    docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
    secrets = json.load(open(secrets_json))
    deps = [d for d in docs if d["kind"] == "Deployment"]
    main_dep = next(
        d for d in deps if d["metadata"]["labels"]["app.kubernetes.io/component"] in ("bridge", "projector")
        and not d["metadata"]["name"].endswith(("-status", "-projector"))
    )
    pod = main_dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}

    def probe(name):
        get = c[name]["httpGet"]
        port = get["port"]
        return {"path": get["path"], "port": ports.get(port, port)}

    mounts = []
    for m in c.get("volumeMounts", []):
        v = volumes[m["name"]]
        host = os.path.join(out, m["name"])
        if "configMap" in v:
            cm = configmaps[v["configMap"]["name"]]
            os.makedirs(host, exist_ok=True)
            for item in v["configMap"]["items"]:
                path = os.path.join(host, item["path"])
                with open(path, "w") as f:
                    f.write(cm["data"][item["key"]])
                os.chmod(path, 0o644)
            if "subPath" in m:
                host = os.path.join(host, m["subPath"])
            mounts.append({"host": host, "container": m["mountPath"], "mode": "0644"})
        elif "projected" in v:
            os.makedirs(host, exist_ok=True)
            mode = v["projected"].get("defaultMode", 0o644)
            for src in v["projected"]["sources"]:
                s = src["secret"]
                for item in s["items"]:
                    ref = f'{s["name"]}/{item["key"]}'
                    if ref not in secrets:
                        sys.exit(f"image-chart: the chart mounts secret {ref}, which the install commands do not create")
                    path = os.path.join(host, item["path"])
                    with open(path, "w") as f:
                        f.write(secrets[ref])
                    os.chmod(path, mode)
            mounts.append({"host": host, "container": m["mountPath"], "mode": oct(mode)[2:]})
        else:
            sys.exit(f"image-chart: volume {m['name']} is neither a ConfigMap nor a projected Secret")

    config_file = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "config")
    cm_key = volumes["config"]["configMap"]["items"][0]["key"]
    cm = configmaps[volumes["config"]["configMap"]["name"]]
    print(json.dumps({
        "deployment": main_dep["metadata"]["name"],
        "image": c["image"],
        "args": c.get("args", []),
        "ports": ports,
        "probes": {n: probe(n) for n in ("startupProbe", "livenessProbe", "readinessProbe") if n in c},
        "pod_security": pod.get("securityContext", {}),
        "security": c.get("securityContext", {}),
        "grace_seconds": pod.get("terminationGracePeriodSeconds", 30),
        "memory_limit": c.get("resources", {}).get("limits", {}).get("memory", ""),
        "env": c.get("env", []),
        "mounts": mounts,
        "config_file": config_file,
        "config": tomllib.loads(cm["data"][cm_key]),
    }))


if __name__ == "__main__":
    main()
