//! The simulated node's JSON-RPC: the node's calls at `/`, its wallet's at `/wallet/adit`
//! (or `/`), answered with the real node's codes, messages and HTTP statuses.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bitcoin::consensus::encode;
use bitcoin::{BlockHash, Transaction};
use serde_json::{Value, json};

use super::fault::RpcFault;
use super::wallet::WALLET_NAME;
use super::{Inner, LONG_POLL, wallet_rpc};
use crate::opensy::{Network, script_for};

/// One JSON-RPC call to the node (or its one wallet).
pub(super) async fn rpc(State(node): State<Arc<Inner>>, Json(request): Json<Value>) -> Response {
    answer(&node, &request).await
}

/// One JSON-RPC call to wallet `name`, which must be the node's.
pub(super) async fn wallet_rpc(
    Path(name): Path<String>,
    State(node): State<Arc<Inner>>,
    Json(request): Json<Value>,
) -> Response {
    if name != WALLET_NAME {
        let fault = RpcFault(
            -18,
            "Requested wallet does not exist or is not loaded".into(),
        );
        return reply(request.get("id"), Err(fault));
    }
    answer(&node, &request).await
}

/// The node's answer to `request`.
async fn answer(node: &Inner, request: &Value) -> Response {
    let method = request.get("method").and_then(Value::as_str).unwrap_or("");
    let params = request.get("params").cloned().unwrap_or(json!([]));
    let param = |i: usize| params.get(i).cloned().unwrap_or(Value::Null);
    reply(request.get("id"), call(node, method, param).await)
}

/// A JSON-RPC reply, with the status the node gives it.
fn reply(id: Option<&Value>, answer: std::result::Result<Value, RpcFault>) -> Response {
    let id = id.cloned().unwrap_or(Value::Null);
    let (status, body) = match answer {
        Ok(result) => (200, json!({"result": result, "error": null, "id": id})),
        Err(RpcFault(code, message)) => (
            // As the node answers a legacy (JSON-RPC 1.0) request.
            if code == -32601 { 404 } else { 500 },
            json!({"result": null, "error": {"code": code, "message": message}, "id": id}),
        ),
    };
    (
        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK),
        Json(body),
    )
        .into_response()
}

/// Dispatches `method`.
async fn call(
    node: &Inner,
    method: &str,
    param: impl Fn(usize) -> Value,
) -> std::result::Result<Value, RpcFault> {
    let hash = |v: Value| -> std::result::Result<BlockHash, RpcFault> {
        v.as_str().and_then(|s| s.parse().ok()).ok_or(RpcFault(
            -8,
            "blockhash must be of length 64 (not valid hex)".into(),
        ))
    };
    match method {
        "getblocktemplate" => {
            let request = param(0);
            let segwit = request
                .get("rules")
                .and_then(Value::as_array)
                .is_some_and(|r| r.iter().any(|x| x == "segwit"));
            if !segwit {
                return Err(RpcFault(
                    -8,
                    "getblocktemplate must be called with the segwit rule set (call with {\"rules\": [\"segwit\"]})".into(),
                ));
            }
            if let Some(wanted) = request.get("longpollid").and_then(Value::as_str) {
                let mut tip = node.tip.subscribe();
                let current = node.template()["longpollid"].clone();
                if current == wanted {
                    let _ = tokio::time::timeout(LONG_POLL, tip.changed()).await;
                }
            }
            Ok(node.template())
        }
        "submitblock" => {
            let hex_block = param(0);
            let hex_block = hex_block.as_str().ok_or(RpcFault(
                -1,
                "JSON value is not a string as expected".into(),
            ))?;
            Ok(node
                .submit(hex_block)
                .await?
                .map_or(Value::Null, Value::String))
        }
        "getblockhash" => {
            let chain = node.lock();
            let height = param(0)
                .as_u64()
                .filter(|h| (*h as usize) < chain.main.len())
                .ok_or(RpcFault(-8, "Block height out of range".into()))?;
            Ok(json!(chain.main[height as usize].to_string()))
        }
        "getblockheader" => node.header(&hash(param(0))?),
        "getblock" => {
            let id = hash(param(0))?;
            let chain = node.lock();
            let known = chain
                .known
                .get(&id)
                .ok_or(RpcFault(-5, "Block not found".into()))?;
            Ok(json!(encode::serialize_hex(&known.block)))
        }
        "getbestblockhash" => Ok(json!(node.lock().tip().1.to_string())),
        "getblockchaininfo" => {
            let chain = node.lock();
            let (height, tip) = chain.tip();
            Ok(json!({
                "chain": "regtest",
                "blocks": height,
                "headers": height,
                "bestblockhash": tip.to_string(),
                "mediantime": chain.median_time_past(tip),
                "initialblockdownload": false,
                "pruned": false,
            }))
        }
        "invalidateblock" => {
            node.invalidate(&hash(param(0))?)?;
            Ok(Value::Null)
        }
        "validateaddress" => {
            let address = param(0);
            let address = address.as_str().unwrap_or_default();
            Ok(match script_for(address, Network::Regtest) {
                Ok(script) => json!({
                    "isvalid": true,
                    "address": address,
                    "scriptPubKey": hex::encode(script.as_bytes()),
                    "isscript": script.is_p2sh(),
                    "iswitness": script.is_witness_program(),
                }),
                Err(e) => json!({"isvalid": false, "error": e.to_string()}),
            })
        }
        "getblockcount" => Ok(json!(node.lock().tip().0)),
        "generatetoaddress" => {
            let n = param(0)
                .as_u64()
                .filter(|n| *n <= 1_000)
                .ok_or(RpcFault(-8, "nblocks must be 0..=1000 here".into()))?;
            let address = param(1);
            let payout = script_for(address.as_str().unwrap_or_default(), Network::Regtest)
                .map_err(|_| RpcFault(-5, "Error: Invalid address".into()))?;
            Ok(json!(node.generate(n, &payout).await?))
        }
        "sendrawtransaction" => {
            let tx = param(0)
                .as_str()
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| encode::deserialize::<Transaction>(&b).ok())
                .ok_or(RpcFault(-22, "TX decode failed".into()))?;
            let txid = node.lock().accept(tx)?;
            // A long poll waiting on this template hears of the new transaction.
            node.tip.send_modify(|_| {});
            Ok(json!(txid.to_string()))
        }
        method => wallet_rpc::call(&mut node.lock(), method, &param),
    }
}
