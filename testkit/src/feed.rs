//! A utility's feed served over real HTTP on loopback, whose answer a test changes while it
//! is polled: a cooperative's plain-text power signal, a JSON or CSV feed.

use std::sync::{Arc, Mutex, PoisonError};

/// A feed answering `GET <path>` with whatever the test last set; served until the test's
/// runtime ends.
pub struct Feed {
    /// Its URL, `http://127.0.0.1:<port><path>`.
    pub url: String,
    /// What it answers now.
    body: Arc<Mutex<String>>,
}

impl Feed {
    /// Serves `path`, answering `body` until [`Feed::set`].
    pub async fn start(path: &str, body: &str) -> Self {
        let body = Arc::new(Mutex::new(body.to_string()));
        let answer = body.clone();
        let app = axum::Router::new().route(
            path,
            axum::routing::get(move || {
                let answer = answer.clone();
                async move {
                    answer
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the feed's port");
        let url = format!(
            "http://{}{path}",
            listener.local_addr().expect("its address")
        );
        tokio::spawn(async move { axum::serve(listener, app).await.expect("the feed serves") });
        Self { url, body }
    }

    /// What the feed answers from now on.
    pub fn set(&self, body: &str) {
        *self.body.lock().unwrap_or_else(PoisonError::into_inner) = body.to_string();
    }
}
