//! Reading a stream back for `verify`, once per node that holds it (headers and bodies): waits until the stream has a
//! leader and every replica is current, then reads each node's copy with an R1 consumer (the
//! server places one on a random peer of the stream, so consumers are made until every peer has
//! been read). A clustered stream's replicas can differ (a replica that was catching up, or one
//! that diverged after its leader was killed): reading one copy at random, as a single
//! consumer does, would blame the leader for a replica's state or miss a replica's loss.
//!
//! This module only reads: it must not judge the answers (that is [`crate::verify`]) nor publish.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream::Stream};
use futures::StreamExt as _;

/// One stored message: the delivery id (from `Nats-Msg-Id`), its `ce-id`, its session
/// (`ce-subject`), its type (`ce-type` without the `vx.verification.` prefix) and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) delivery: String,
    pub(crate) ce_id: String,
    pub(crate) request_id: String,
    pub(crate) kind: String,
    pub(crate) body: bytes::Bytes,
}

/// One node's copy of the stream, by stream sequence.
#[derive(Debug)]
pub(crate) struct NodeCopy {
    /// The server the reading consumer ran on (empty for a server outside a cluster).
    pub(crate) node: String,
    pub(crate) by_seq: BTreeMap<u64, Stored>,
}

impl NodeCopy {
    /// Delivery id → (`ce-id`, how many times stored).
    pub(crate) fn ids(&self) -> BTreeMap<&str, (&str, u64)> {
        let mut ids: BTreeMap<&str, (&str, u64)> = BTreeMap::new();
        for s in self.by_seq.values() {
            ids.entry(&s.delivery).or_insert((&s.ce_id, 0)).1 += 1;
        }
        ids
    }

    /// The sequence a delivery is stored at (the first, if more than once).
    pub(crate) fn seq_of(&self, delivery: &str) -> Option<u64> {
        self.by_seq
            .iter()
            .find(|(_, s)| s.delivery == delivery)
            .map(|(q, _)| *q)
    }
}

/// The stream as read: the leader's name and message count, and every node's copy.
#[derive(Debug)]
pub(crate) struct Copies {
    /// The stream leader when the reading began (empty outside a cluster).
    pub(crate) leader: String,
    /// Messages in the stream according to its leader.
    pub(crate) messages: u64,
    /// The leader's copy first; never empty ([`read`] fails unless every node was read).
    pub(crate) copies: Vec<NodeCopy>,
}

impl Copies {
    /// The leader's copy: the stream's state as acknowledged writes define it.
    pub(crate) fn leader_copy(&self) -> &NodeCopy {
        &self.copies[0]
    }
}

/// The delivery id a `Nats-Msg-Id` names: the bridge binds it to the body as
/// `{id}:sha256:{hash}`; the answer records know the delivery id.
fn delivery_of(msg_id: &str) -> &str {
    msg_id.split_once(":sha256:").map_or(msg_id, |(d, _)| d)
}

/// Waits until the stream is readable, has a leader and no replica is offline, behind or not
/// current; returns it with the leader's name, the peers' names and the leader's count.
async fn wait_current(
    js: &jetstream::Context,
    stream: &str,
    deadline: Instant,
) -> anyhow::Result<(Stream, String, Vec<String>, u64)> {
    loop {
        let why = match js.get_stream(stream).await {
            Ok(mut s) => {
                // Right after a heal the JetStream API may answer "no responders" for a moment
                // (no meta or stream leader yet): waited out like any other "not yet".
                let info = match s.info().await {
                    Ok(i) => i.clone(),
                    Err(e) => {
                        if Instant::now() >= deadline {
                            anyhow::bail!("{stream}: stream info: {e} when the wait ended");
                        }
                        eprintln!("verify: waiting: stream info: {e}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                let (leader, replicas) = match &info.cluster {
                    Some(c) => (c.leader.clone().unwrap_or_default(), c.replicas.clone()),
                    None => (String::new(), Vec::new()),
                };
                let behind: Vec<String> = replicas
                    .iter()
                    .filter(|p| !p.current || p.offline || p.lag.unwrap_or(0) > 0)
                    .map(|p| format!("{} (current {}, lag {:?})", p.name, p.current, p.lag))
                    .collect();
                if info.cluster.is_some() && leader.is_empty() {
                    "no stream leader".to_owned()
                } else if !behind.is_empty() {
                    format!("replicas not current: {}", behind.join(", "))
                } else {
                    let peers = replicas.into_iter().map(|p| p.name).collect();
                    return Ok((s, leader, peers, info.state.messages));
                }
            }
            Err(e) => format!("stream not readable: {e}"),
        };
        if Instant::now() >= deadline {
            anyhow::bail!("{stream}: {why} when the wait ended");
        }
        eprintln!("verify: waiting: {why}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every message the consumer has pending when it was made, by stream sequence (no acks): the
/// copy of the node it was placed on.
pub(crate) async fn read_all(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    what: &str,
    deadline: Instant,
) -> anyhow::Result<BTreeMap<u64, async_nats::Message>> {
    let mut by_seq = BTreeMap::new();
    let pending = consumer.cached_info().num_pending;
    if pending > 0 {
        let mut messages = consumer.messages().await?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(10);
            let Ok(Some(msg)) = tokio::time::timeout(left, messages.next()).await else {
                anyhow::bail!(
                    "{what}: read {} of {pending} messages before the deadline",
                    by_seq.len()
                );
            };
            let msg = msg?;
            let info = msg.info().map_err(|e| anyhow::anyhow!("{e}"))?;
            let (seq, left_on_node) = (info.stream_sequence, info.pending);
            by_seq.insert(seq, msg.message.clone());
            if left_on_node == 0 {
                break;
            }
        }
    }
    Ok(by_seq)
}

/// A header's value, or empty.
pub(crate) fn header(msg: &async_nats::Message, k: &str) -> String {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(k))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default()
}

/// Reads the copy of the node the consumer landed on (no acks).
async fn read_copy(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    node: String,
    deadline: Instant,
) -> anyhow::Result<NodeCopy> {
    let by_seq = read_all(consumer, &node, deadline)
        .await?
        .into_iter()
        .map(|(seq, msg)| {
            let h = |k: &str| header(&msg, k);
            let kind = h("ce-type");
            let stored = Stored {
                delivery: delivery_of(&h("Nats-Msg-Id")).to_owned(),
                ce_id: h("ce-id"),
                request_id: h("ce-subject"),
                kind: kind
                    .strip_prefix("vx.verification.")
                    .unwrap_or(&kind)
                    .to_owned(),
                body: msg.payload,
            };
            (seq, stored)
        })
        .collect();
    Ok(NodeCopy { node, by_seq })
}

/// Every node's copy of `stream`, the leader's first; waits up to `wait` for the stream to be
/// current on every replica, and fails if a node cannot be read in that time.
pub(crate) async fn read(
    js: &jetstream::Context,
    stream: &str,
    wait: Duration,
) -> anyhow::Result<Copies> {
    let deadline = Instant::now() + wait;
    let (s, leader, peers, messages) = wait_current(js, stream, deadline).await?;
    let mut want: Vec<String> = std::iter::once(leader.clone()).chain(peers).collect();
    let mut copies: Vec<NodeCopy> = Vec::new();
    // Placement is random among the stream's peers: 120 tries (some may be spent waiting out
    // an API that is not back yet) miss one of 3 peers with a chance below 3 · (2/3)^60: never.
    for _ in 0..120 {
        if want.is_empty() {
            break;
        }
        let consumer = match s
            .create_consumer(pull::Config {
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ack_policy: jetstream::consumer::AckPolicy::None,
                memory_storage: true,
                num_replicas: 1,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
        {
            Ok(c) => c,
            // The same "not yet" as above, within the same deadline.
            Err(e) if Instant::now() < deadline => {
                eprintln!("verify: waiting: creating a reading consumer: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let info = consumer.cached_info();
        let node = info
            .cluster
            .as_ref()
            .and_then(|c| c.leader.clone())
            .unwrap_or_default();
        let name = info.name.clone();
        // Outside a cluster there is one copy, whatever the consumer reports.
        let slot = if want.len() == 1 && copies.is_empty() {
            Some(0)
        } else {
            want.iter().position(|n| *n == node)
        };
        let read = match slot {
            Some(i) => {
                want.remove(i);
                Some(read_copy(&consumer, node, deadline).await)
            }
            None => None,
        };
        // Best effort: an R1 memory consumer also goes away after its inactive threshold.
        let _ = s.delete_consumer(&name).await;
        if let Some(copy) = read {
            copies.push(copy?);
        }
    }
    if !want.is_empty() {
        anyhow::bail!("{stream}: no consumer was placed on {}", want.join(", "));
    }
    // The leader's copy first (it was wanted first, but read whenever a consumer landed on it).
    if let Some(i) = copies.iter().position(|c| c.node == leader) {
        copies.swap(0, i);
    }
    Ok(Copies {
        leader,
        messages,
        copies,
    })
}
