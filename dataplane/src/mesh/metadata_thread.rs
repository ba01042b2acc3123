//! The loop of the metadata service's thread: requests from every network thread's ring, one at
//! a time (each change is durable before the next starts), replies back.

use super::lifecycle::Lifecycle;
use super::messages::MetadataReply;
use super::ring::{MetadataEndpoint, Waker};
use crate::metadata::MetadataService;
use std::time::Duration;

/// Longest the service sleeps when idle: bounds how late a stop is noticed.
const METADATA_IDLE_WAIT_MS: u64 = 100;

/// Serves requests until the servers are told to stop and no request is left.
pub fn run(
    mut service: MetadataService,
    mut endpoints: Vec<MetadataEndpoint>,
    waker: &Waker,
    lifecycle: &Lifecycle,
) {
    loop {
        let mut served = false;
        for endpoint in &mut endpoints {
            while let Some(request) = endpoint.take_request() {
                let outcome = service.execute(request.op);
                endpoint.reply(MetadataReply {
                    token: request.token,
                    outcome,
                });
                served = true;
            }
            endpoint.wake_if_replied();
        }
        if served {
            continue;
        }
        if lifecycle.metadata_stopping() {
            break;
        }
        waker.wait(Duration::from_millis(METADATA_IDLE_WAIT_MS));
    }
    tracing::info!("metadata service stopped");
}
