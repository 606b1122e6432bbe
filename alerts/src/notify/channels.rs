//! Sending one notification through one channel: a webhook (JSON), Telegram's `sendMessage`,
//! email over SMTP (lettre), SMS through a Twilio-shaped gateway. Each returns what the other
//! side said, or why it failed.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{Value, json};

use super::config::Channel;

/// What is sent: a one-line summary, a longer text, and the JSON body for webhooks.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// One line (subject, SMS).
    pub summary: String,
    /// Several lines (email, Telegram).
    pub text: String,
    /// The webhook's body.
    pub json: Value,
}

/// Sends `message` through `channel`.
pub async fn send(
    channel: &Channel,
    message: &Outgoing,
    out: &adit_egress::Outbound,
    timeout: Duration,
) -> Result<String, String> {
    let http = &out.http;
    match channel {
        Channel::Webhook { url } => {
            let shown = adit_egress::redact(url);
            let checked = out.url(url).map_err(|e| format!("{shown}: {e}"))?;
            let r = http
                .post(checked)
                .timeout(timeout)
                .json(&message.json)
                .send()
                .await;
            reply(&adit_egress::redact(url), r).await
        }
        Channel::Telegram {
            api_url,
            bot_token,
            chat_id,
        } => {
            let url = format!(
                "{}/bot{bot_token}/sendMessage",
                api_url.trim_end_matches('/')
            );
            let body = json!({ "chat_id": chat_id, "text": message.text });
            let checked = out
                .url(&url)
                .map_err(|e| format!("telegram sendMessage: {e}"))?;
            let r = http.post(checked).timeout(timeout).json(&body).send().await;
            // The token is part of the URL: never in an error that is logged.
            reply("telegram sendMessage", r).await
        }
        Channel::Sms {
            api_url,
            account_sid,
            auth_token,
            from,
            to,
        } => {
            let url = format!(
                "{}/2010-04-01/Accounts/{account_sid}/Messages.json",
                api_url.trim_end_matches('/')
            );
            let checked = out.url(&url).map_err(|e| format!("sms gateway: {e}"))?;
            let mut replies = Vec::new();
            for number in to {
                let form = [
                    ("To", number.as_str()),
                    ("From", from.as_str()),
                    ("Body", message.summary.as_str()),
                ];
                let r = http
                    .post(checked.clone())
                    .timeout(timeout)
                    .basic_auth(account_sid, Some(auth_token))
                    .form(&form)
                    .send()
                    .await;
                replies.push(reply("sms gateway", r).await?);
            }
            Ok(replies.join("; "))
        }
        Channel::Email {
            smtp_host,
            smtp_port,
            starttls,
            username,
            password,
            from,
            to,
        } => {
            let mut builder = Message::builder()
                .from(from.parse().map_err(|e| format!("from: {e}"))?)
                .subject(&message.summary)
                .header(ContentType::TEXT_PLAIN);
            for address in to {
                builder = builder.to(address.parse().map_err(|e| format!("to: {e}"))?);
            }
            let email = builder
                .body(message.text.clone())
                .map_err(|e| e.to_string())?;
            // The relay is reached at an address the policy allows, resolved here; TLS still
            // checks the certificate against the relay's name.
            let at = out
                .guard
                .resolve(smtp_host, *smtp_port)
                .await
                .map_err(|e| format!("SMTP {smtp_host}:{smtp_port}: {e}"))?;
            let ip = at
                .first()
                .ok_or_else(|| format!("SMTP {smtp_host}: no address"))?
                .ip()
                .to_string();
            let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(ip);
            if *starttls {
                let tls = TlsParameters::new(smtp_host.clone()).map_err(|e| e.to_string())?;
                transport = transport.tls(Tls::Required(tls));
            }
            let mut transport = transport.port(*smtp_port).timeout(Some(timeout));
            if let (Some(u), Some(p)) = (username, password) {
                transport = transport.credentials(Credentials::new(u.clone(), p.clone()));
            }
            let response = transport
                .build()
                .send(email)
                .await
                .map_err(|e| format!("SMTP {smtp_host}:{smtp_port}: {e}"))?;
            Ok(format!(
                "{} {}",
                response.code(),
                response.message().collect::<Vec<_>>().join(" ")
            ))
        }
    }
}

async fn reply(what: &str, r: reqwest::Result<reqwest::Response>) -> Result<String, String> {
    /// Most of a reply read: enough for the error a service explains itself with.
    const MAX_REPLY_BYTES: usize = 4096;
    let r = r.map_err(|e| format!("{what}: {}", adit_egress::describe(e)))?;
    let status = r.status();
    if status.is_success() {
        return Ok(format!("{status}"));
    }
    let body = adit_egress::read_capped(r, MAX_REPLY_BYTES)
        .await
        .map(|b| adit_egress::excerpt(&b.bytes, 300))
        .unwrap_or_default();
    Err(format!("{what}: {status} {body}"))
}
