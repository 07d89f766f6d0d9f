//! The README's shell snippets, run literally under `/bin/sh` (dash here), as a new user would
//! paste them after `cargo install`: only the ports (4333, 8080, 8081, 8090) and the NATS store
//! directory are swapped for free ones (the default `http.listen` through `VXB_HTTP__LISTEN`), and `vx-bridge` on PATH is the binary under test.

use std::process::Command;

use vx_testkit::{free_port, vx_bridge_bin};

/// The ```sh block after `<!-- readme-test: NAME -->`.
fn snippet(readme: &str, name: &str) -> String {
    let marker = format!("<!-- readme-test: {name} -->\n```sh\n");
    let start = readme
        .find(&marker)
        .unwrap_or_else(|| panic!("README has no snippet {name}"))
        + marker.len();
    let len = readme[start..].find("```").expect("closed block");
    readme[start..start + len].to_owned()
}

#[test]
fn the_readme_snippets_work_literally_under_posix_sh() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let store = tempfile::tempdir().unwrap();
    let ports: Vec<(String, String)> = ["4333", "8080", "8081", "8090"]
        .iter()
        .map(|p| (p.to_string(), free_port().to_string()))
        .collect();
    let sign = snippet(&readme, "sign");
    // The signing snippet runs twice: each run must be a new delivery, not a duplicate.
    let mut script = [
        "set -e\ntrap 'pkill -P $$ 2>/dev/null' EXIT\n".to_owned(),
        snippet(&readme, "check-config"),
        snippet(&readme, "serve"),
        sign.clone(),
        sign,
        snippet(&readme, "status"),
        snippet(&readme, "sessions"),
    ]
    .join("\n");
    for (from, to) in &ports {
        script = script.replace(&format!(":{from}"), &format!(":{to}"));
        script = script.replace(&format!("-p {from} "), &format!("-p {to} "));
    }
    script = script.replace("/tmp/vx-nats", &store.path().display().to_string());
    let bin = vx_bridge_bin();
    let bin_dir = bin.parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("timeout")
        .args(["60", "/bin/sh", "-c", &script])
        .current_dir(root)
        .env_clear()
        .env("PATH", path)
        .env("HOME", store.path())
        // The serve snippet listens on the default port, 8080: here the swapped one.
        .env("VXB_HTTP__LISTEN", format!("127.0.0.1:{}", ports[1].1))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("--- script\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(out.status.success(), "{all}");
    assert!(stderr.contains("config ok"), "{all}");
    assert_eq!(stdout.matches("HTTP/1.1 202 Accepted").count(), 2, "{all}");
    assert_eq!(stdout.matches("\"duplicate\":false").count(), 2, "{all}");
    assert!(stdout.contains("\"seq\":2"), "{all}");
    let json_lines: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let reply = json_lines
        .iter()
        .find(|v| v.get("checked_at").is_some())
        .expect(&all);
    // The PASS webhook sent above is in the session view.
    assert_eq!(reply["current_status"], "COMPLETED", "{all}");
    assert_eq!(reply["source"], "events", "{all}");
    // `sessions get` prints it; `rebuild` (in place, then into another bucket) writes the one key.
    let state = json_lines
        .iter()
        .find(|v| v.get("stream_seq").is_some())
        .expect(&all);
    assert_eq!(state["terminal"], true, "{all}");
    assert_eq!(state["status"], "PASS", "{all}");
    assert!(stdout.contains(" 1 keys written"), "{all}");
    let report = json_lines
        .iter()
        .find(|v| v.get("keys_written").is_some())
        .expect(&all);
    assert_eq!(report["keys_written"], 1, "{all}");
}
