//! The mock VX API of the tests: the service's own [`MockVx`] (see `vx_bridge::mock_vx` for
//! its routes and steps), served on `127.0.0.1:0` with the seed result as its result body, and
//! stopped when the [`VxApi`] is dropped.

use std::ops::Deref;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
pub use vx_bridge::mock_vx::{MockVx, Step};

use crate::fixtures::SEED;

/// A running [`MockVx`]; derefs to it for scripting and counting.
pub struct VxApi {
    vx: MockVx,
    url: String,
    shutdown: CancellationToken,
}

impl VxApi {
    /// Serves `vx` (give it [`VxApi::seeded`]'s body, or any) on a free loopback port.
    pub async fn serve(vx: MockVx) -> VxApi {
        let shutdown = CancellationToken::new();
        let addr = vx
            .start(([127, 0, 0, 1], 0).into(), shutdown.clone())
            .await
            .expect("bind the mock VX API");
        VxApi {
            vx,
            url: format!("http://{addr}"),
            shutdown,
        }
    }

    /// A mock accepting bearer `token` (and the tokens it issues), whose result body is the
    /// seed fixture.
    pub fn seeded(token: &str) -> MockVx {
        let seed: Value = serde_json::from_str(SEED).expect("the seed fixture is JSON");
        MockVx::new(token).with_result_body(seed)
    }

    /// Its base URL, `http://127.0.0.1:<port>` (the token endpoint is `{url}/oauth/token`).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Deref for VxApi {
    type Target = MockVx;

    fn deref(&self) -> &MockVx {
        &self.vx
    }
}

impl Drop for VxApi {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
