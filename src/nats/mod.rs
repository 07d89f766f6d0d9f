//! Everything that talks to NATS: the connection, the stream, publishing with an awaited PubAck,
//! riding through short outages, and what a server's version means.
//!
//! - [`ridethrough`]: retrying a publish through a short NATS outage (`nats.outage_wait`).
//! - [`version`]: what the server's version means (support, known data loss, features).
//!
//! This module must not decide what an event is (that is [`crate::event`]), answer HTTP, or call
//! the VX API.

pub mod ridethrough;
pub mod version;
