// Validates rendered manifests with the npm `kubernetes-models` schemas (built-in kinds) and
// the Prometheus Operator models (ServiceMonitor): types, enums, formats such as quantities,
// and CRD fields. Unknown fields are kubernetes-validate --strict's job. A kind without a model
// is an error, so nothing passes unchecked. Duplicate keys are the yamllint check's job (here
// the last one wins, as in kubectl), so that they do not hide the faults checked here.
// Usage: node chart-k8s-models.mjs FILE...  (run a copy placed next to the node_modules that
// hold kubernetes-models, @kubernetes-models/prometheus-operator and yaml: ES modules resolve
// from the script's own directory)
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
const CRD_PKG = { "monitoring.coreos.com": "@kubernetes-models/prometheus-operator" };
let ok = 0, bad = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"), { uniqueKeys: false })) {
    if (doc.errors.length) { console.log(`  k8s-models ERROR ${doc.errors[0].message}`); bad++; continue; }
    const obj = doc.toJS();
    if (!obj) continue;
    const [group, version] = obj.apiVersion.includes("/") ? obj.apiVersion.split("/") : ["", obj.apiVersion];
    const mod = `${CRD_PKG[group] ?? "kubernetes-models"}/${group ? group + "/" : ""}${version}/${obj.kind}`;
    const what = `${obj.kind}/${obj.metadata?.name}`;
    let Model;
    try { Model = (await import(mod))[obj.kind]; } catch { Model = undefined; }
    if (!Model) { console.log(`  k8s-models ERROR ${what}: no model for ${obj.apiVersion}`); bad++; continue; }
    try { new Model(obj).validate(); ok++; }
    catch (e) { console.log(`  k8s-models ERROR ${what}: ${e.message.split("\n").slice(0, 6).join(" | ")}`); bad++; }
  }
}
if (bad) console.log(`  k8s-models: ${ok} valid, ${bad} invalid`);
process.exit(bad ? 1 : 0);
