//! What live subscriptions share: the bus and a cap on how many run at once (the SSE route
//! itself is `live`).

use std::sync::Arc;

use async_nats::jetstream;
use tokio::sync::Semaphore;

/// What live subscriptions share: the bus and a cap on how many run at once.
#[derive(Clone)]
pub struct Live {
    /// JetStream, to read the streams.
    pub(crate) js: jetstream::Context,
    /// One permit per open subscription.
    pub(crate) slots: Arc<Semaphore>,
}

impl Live {
    /// Live subscriptions over `js`, at most `max_subscribers` at once.
    pub fn new(js: jetstream::Context, max_subscribers: usize) -> Self {
        Self {
            js,
            slots: Arc::new(Semaphore::new(max_subscribers)),
        }
    }
}
