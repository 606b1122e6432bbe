//! One JSON-RPC call over HTTP to a node or wallet a test started (the simulated OpenSY node
//! and its wallet), as a client would make it.

use serde_json::{Value, json};

/// Posts `method` with `params` to `url` (`http://…/` or `…/wallet/<name>`): the whole
/// answer, `result` and `error`.
pub async fn answer(url: &str, method: &str, params: Value) -> Value {
    reqwest::Client::new()
        .post(url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} to {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{method} to {url}: not JSON: {e}"))
}

/// Posts `method` and returns its result, failing the test on an error.
pub async fn result(url: &str, method: &str, params: Value) -> Value {
    let answer = answer(url, method, params).await;
    assert!(answer["error"].is_null(), "{method}: {answer}");
    answer["result"].clone()
}
