//! `startup`: starts a command, polls a readiness URL, and reports the time from spawn to 200.

use std::time::{Duration, Instant};

use crate::client::{get_status, Target};

#[derive(clap::Args)]
pub(crate) struct StartupArgs {
    /// Readiness URL (http, loopback), polled every 2 ms.
    #[arg(long)]
    ready_url: String,
    /// How many times to start the command.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Give up on one start after this long.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub(crate) fn run(a: StartupArgs) -> anyhow::Result<()> {
    let target = Target::parse(&a.ready_url)?;
    let (program, args) = a
        .command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no command"))?;
    let mut times = Vec::new();
    let mut failures = 0u32;
    for _ in 0..a.runs.max(1) {
        let t0 = Instant::now();
        let mut child = std::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let mut ready = None;
        while t0.elapsed() < a.timeout {
            if get_status(&target.addr, &target.authority, &target.path) == Some(200) {
                ready = Some(t0.elapsed());
                break;
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        let _ = child.wait();
        match ready {
            Some(t) => times.push(t.as_secs_f64() * 1000.0),
            None => failures += 1,
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    let (min, max) = (
        times.first().copied().unwrap_or(f64::NAN),
        times.last().copied().unwrap_or(f64::NAN),
    );
    if a.json {
        println!(
            "{}",
            serde_json::json!({"mode": "startup", "runs": times.len(), "failures": failures,
                "median_ms": median, "min_ms": min, "max_ms": max})
        );
    } else {
        println!(
            "startup: {} runs, median {median:.1} ms (min {min:.1}, max {max:.1}), {failures} failed",
            times.len()
        );
    }
    Ok(())
}
