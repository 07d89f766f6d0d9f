//! Everything that talks to NATS: the connection, the stream, publishing with an awaited PubAck,
//! riding through short outages, and what a server's version means.
//!
//! - [`connect`](mod@connect): the client, from `[nats]`; reconnects without end.
//! - [`subjects`]: the subjects under the prefix, and NATS subject matching.
//! - [`stream`]: creating, updating or checking the stream.
//! - [`publisher`]: one publish with an awaited PubAck, and why it failed.
//! - [`ridethrough`]: retrying a publish through a short NATS outage (`nats.outage_wait`).
//! - [`version`]: what the server's version means (support, known data loss, features).
//! - [`failure`]: a failed JetStream API call and what it was doing.
//!
//! The types most callers need are re-exported here ([`connect()`], [`Publisher`], [`Subjects`], …).
//!
//! This module must not decide what an event is (that is [`crate::event`]), answer HTTP, or call
//! the VX API.

pub mod connect;
pub mod failure;
pub mod publisher;
pub mod ridethrough;
pub mod stream;
pub mod subjects;
pub mod version;

pub use connect::connect;
pub use failure::JetStreamFailure;
pub use publisher::{wire_size, PublishError, Publisher, Stored};
pub use stream::{check_subjects, desired_stream, ensure_stream, StreamError};
pub use subjects::Subjects;
