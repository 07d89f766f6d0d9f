//! Watches the session view (KV bucket `VX_SESSIONS`) and prints each session's state as it
//! changes: the README's "Watching the view from a service" example, compiled.
//!
//! `cargo run --example watch_sessions -- [nats-url] [bucket]`

use async_nats::jetstream::{self, kv::Operation};
use futures::StreamExt as _;
use vx_bridge::sessions::rule::SessionState;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let bucket = args.next().unwrap_or_else(|| "VX_SESSIONS".into());
    let js = jetstream::new(async_nats::connect(url).await?);
    // `watch_with_history(">")`: the last value of every key first, then each change
    // (`watch_all` would deliver only the changes made after it started).
    let mut watch = js
        .get_key_value(&bucket)
        .await?
        .watch_with_history(">")
        .await?;
    while let Some(entry) = watch.next().await {
        let entry = entry?;
        if entry.operation != Operation::Put {
            // A delete or purge: the session left the view (max_age) or a rebuild purged it.
            println!("{} removed", entry.key);
            continue;
        }
        match serde_json::from_slice::<SessionState>(&entry.value) {
            Ok(s) => println!(
                "{} status={} current_status={} terminal={} source={:?} seq={:?}",
                entry.key,
                s.status,
                s.current_status.as_deref().unwrap_or("-"),
                s.terminal,
                s.source,
                s.stream_seq
            ),
            Err(e) => eprintln!("{}: not a session state: {e}", entry.key),
        }
    }
    Ok(())
}
