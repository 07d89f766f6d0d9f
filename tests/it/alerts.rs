//! The alert rules (`helm/vx-bridge/files/alerts.yaml`, the one source) agree with what is said
//! about them: the README's alert table is generated from them, each alert's `runbook_url` names
//! a section of `docs/RUNBOOK.md` that says what it means, what to check and what to do, and the
//! promtool unit tests have a firing and a silent case for each. promtool itself runs in
//! `scripts/chart/prometheus-check.sh` (CI); these tests need no Prometheus.

use std::collections::BTreeSet;

use serde_json::Value;

const RULES: &str = "helm/vx-bridge/files/alerts.yaml";
const TESTS: &str = "tests/prometheus/alerts.test.yaml";
const START: &str = "<!-- ALERTS:START -->";
const END: &str = "<!-- ALERTS:END -->";

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Every alerting rule of the rule file, in order.
fn alerts() -> Vec<Value> {
    let doc: Value = serde_norway::from_str(&read(RULES)).unwrap();
    let rules: Vec<Value> = doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect();
    assert!(rules.len() >= 10, "{rules:?}");
    rules
        .into_iter()
        .filter(|r| r["alert"].is_string())
        .collect()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// The README table, as generated from the rule file.
fn alert_table() -> String {
    let mut t = String::from(
        "| alert | severity | expression (PromQL) | for | means |\n|---|---|---|---|---|\n",
    );
    for a in alerts() {
        let name = s(&a, "alert");
        t += &format!(
            "| [`{name}`](docs/RUNBOOK.md#{}) | {} | `{}` | {} | {} |\n",
            name.to_lowercase(),
            s(&a["labels"], "severity"),
            s(&a, "expr").trim().replace('|', "\\|"),
            a["for"].as_str().unwrap_or("at once"),
            s(&a["annotations"], "summary"),
        );
    }
    t
}

#[test]
fn the_readme_alert_table_is_generated_from_the_rule_file() {
    let readme = read("README.md");
    let table = readme
        .split(START)
        .nth(1)
        .and_then(|r| r.split(END).next())
        .expect("alert table markers in README.md");
    let expected = alert_table();
    assert_eq!(
        table.trim(),
        expected.trim(),
        "README alert table differs from {RULES}; put this between the markers:\n{expected}"
    );
}

#[test]
fn every_alert_has_a_summary_a_description_and_a_runbook_section() {
    let runbook = read("docs/RUNBOOK.md");
    let sections: Vec<(&str, &str)> = runbook
        .split("\n### ")
        .skip(1)
        .map(|s| s.split_once('\n').unwrap_or((s, "")))
        .map(|(h, body)| (h.trim(), body.split("\n## ").next().unwrap_or(body)))
        .collect();
    let mut names = BTreeSet::new();
    for a in alerts() {
        let name = s(&a, "alert");
        assert!(names.insert(name.to_owned()), "{name} twice");
        let ann = &a["annotations"];
        assert!(s(ann, "summary").len() > 10, "{name}: summary");
        assert!(s(ann, "description").len() > 30, "{name}: description");
        assert!(
            ["critical", "warning"].contains(&s(&a["labels"], "severity")),
            "{name}: severity"
        );
        // GitHub's anchor of a heading `### VxBridgeX` is `#vxbridgex`.
        assert_eq!(
            s(ann, "runbook_url"),
            format!("docs/RUNBOOK.md#{}", name.to_lowercase()),
            "{name}"
        );
        let body = sections
            .iter()
            .find(|(h, _)| *h == name)
            .unwrap_or_else(|| panic!("docs/RUNBOOK.md has no section `### {name}`"))
            .1;
        for part in ["**Means.**", "**Check.**", "**Do.**"] {
            assert!(body.contains(part), "RUNBOOK {name}: no {part}");
        }
    }
    // And no section for an alert that does not exist.
    for (h, _) in &sections {
        assert!(names.contains(*h), "RUNBOOK section `{h}` names no alert");
    }
}

#[test]
fn every_alert_has_a_firing_and_a_silent_promtool_case() {
    let doc: Value = serde_norway::from_str(&read(TESTS)).unwrap();
    assert_eq!(
        doc["rule_files"][0],
        format!("../../{RULES}"),
        "{TESTS} must test the shipped rule file"
    );
    let cases: Vec<&Value> = doc["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .collect();
    for a in alerts() {
        let name = s(&a, "alert");
        let of_it = || cases.iter().filter(|c| c["alertname"] == name);
        assert!(
            of_it().any(|c| c["exp_alerts"].as_array().is_some_and(|e| !e.is_empty())),
            "{name}: no case in which it fires"
        );
        assert!(
            of_it().any(|c| c["exp_alerts"].as_array().is_some_and(|e| e.is_empty())),
            "{name}: no case in which it stays silent"
        );
    }
}
