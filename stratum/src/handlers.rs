//! What each request of XMRig's dialect does on a connection: login, getjob, submit (checks,
//! RandomX off the runtime, then the session's [`Outcome`] carried out), keepalived, and the
//! job pushes that follow new work or a new difficulty.

use serde_json::json;
use tokio::io::AsyncWrite;
use tokio::time::Instant;

use crate::codec::{Call, Id, JobNotification, LoginResult, Response, SubmitParams, parse_request};
use crate::connection::{Conn, Next};
use crate::session::{Outcome, Reject, Session, SessionId, SubmitContext, Verdict, parse_login};

impl<W: AsyncWrite + Unpin> Conn<'_, W> {
    /// Answers one line: parses it and runs its method.
    pub(crate) async fn line(&mut self, line: &[u8]) -> Next {
        let request = match parse_request(line) {
            Ok(r) => r,
            Err(e) => {
                metrics::counter!("adit_pool_protocol_errors_total", "kind" => "bad_request")
                    .increment(1);
                let id = e.request_id().cloned().unwrap_or(Id::Null);
                if self.error(id, &e.to_string()).await.is_err() {
                    return Next::Close;
                }
                return self.penalise();
            }
        };
        let id = request.id.clone();
        let result = match request.call {
            Call::Login(params) => return self.login(id, &params).await,
            Call::GetJob(p) => {
                if !self.pool.guard().allow_getjob(self.ip, Instant::now()) {
                    self.farewell(id, "Too many job requests, slow down").await;
                    return Next::Close;
                }
                if self.session.as_ref().is_none_or(|s| !s.id.is(&p.id)) {
                    self.error(id, Reject::Unauthenticated.message()).await
                } else {
                    match self.job() {
                        Some(job) => self.send(&Response::ok(id, job)).await,
                        None => self.error(id, "No work available").await,
                    }
                }
            }
            Call::Submit(params) => return self.submit(id, params).await,
            Call::Keepalived(_) => {
                self.send(&Response::ok(id, json!({"status": "KEEPALIVED"})))
                    .await
            }
        };
        if result.is_err() {
            Next::Close
        } else {
            Next::Continue
        }
    }

    /// A new job for the session from the current work.
    fn job(&mut self) -> Option<crate::codec::Job> {
        let work = self.work.borrow_and_update().clone();
        let session = self.session.as_mut()?;
        match session.new_job(&self.pool.factory, &work) {
            Ok(job) => Some(job),
            Err(e) => {
                tracing::error!(error = %e, "cannot cut a job from the template");
                None
            }
        }
    }

    /// Retargets a miner that has gone quiet (a difficulty too high for it, before or after
    /// its first share) and sends it a new job when the difficulty changed.
    pub(crate) async fn retarget_on_time(&mut self) -> std::io::Result<()> {
        let network = self.work.borrow().network_difficulty;
        let changed = self
            .session
            .as_mut()
            .and_then(|s| s.tick(&self.pool.config.vardiff, now_ms(), network));
        match changed {
            Some(_) => self.push_job().await,
            None => Ok(()),
        }
    }

    pub(crate) async fn push_job(&mut self) -> std::io::Result<()> {
        if self.session.is_none() {
            self.work.borrow_and_update();
            return Ok(());
        }
        match self.job() {
            Some(job) => self.send(&JobNotification(job)).await,
            None => Ok(()),
        }
    }

    async fn login(&mut self, id: Id, params: &crate::codec::LoginParams) -> Next {
        if !self.pool.guard().allow_login(self.ip, Instant::now()) {
            self.farewell(id, "Too many logins, slow down").await;
            return Next::Close;
        }
        let (algo, offset) = {
            let work = self.work.borrow();
            (work.template.algo(), work.template.job_nonce_offset())
        };
        if !understands(&params.algo, algo, offset.is_some()) {
            let why = match offset {
                Some(at) => format!(
                    "Unsupported algorithm: this pool mines {algo}, whose jobs put the nonce at byte {at} (the job's nonce_offset); list {algo} in login's algo to be sent them"
                ),
                None => format!("Unsupported algorithm: this pool mines {algo}"),
            };
            self.farewell(id, &why).await;
            return Next::Close;
        }
        let identity = match parse_login(params) {
            Ok(identity) => identity,
            Err(why) => {
                self.farewell(id, why).await;
                return self.penalise();
            }
        };
        if self.session.is_none() {
            metrics::gauge!("adit_pool_miners_connected").increment(1.0);
            metrics::gauge!("pool_active_miners").increment(1.0);
        }
        let n = self
            .pool
            .sessions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A difficulty the miner fixes is held within the pool's bounds: at `+1` every hash is
        // a share the pool must verify (issue 23).
        let vardiff = &self.pool.config.vardiff;
        let difficulty = identity
            .fixed_difficulty
            .map_or(self.pool.config.start_difficulty, |d| {
                d.clamp(vardiff.min_difficulty, vardiff.max_difficulty)
            });
        let session_id = SessionId(n);
        self.session = Some(Session::new(session_id, identity, difficulty, now_ms()));
        let Some(job) = self.job() else {
            self.farewell(id, "No work available").await;
            return Next::Close;
        };
        let result = LoginResult {
            id: session_id.text(),
            job,
            extensions: vec!["keepalive".into()],
            status: "OK".into(),
        };
        if self.send(&Response::ok(id, result)).await.is_err() {
            Next::Close
        } else {
            Next::Continue
        }
    }

    /// A share: the session's checks, RandomX on the verification threads, then the session's
    /// outcome carried out (event, block, answer, score, new job).
    async fn submit(&mut self, id: Id, params: SubmitParams) -> Next {
        if !self.pool.guard().allow_submit(self.ip, Instant::now()) {
            self.farewell(id, "Too many shares, slow down").await;
            return Next::Close;
        }
        let tip_height = self.work.borrow().height;
        let Some(session) = self.session.as_mut() else {
            if self
                .error(id, Reject::Unauthenticated.message())
                .await
                .is_err()
            {
                return Next::Close;
            }
            return self.penalise();
        };
        let checked = session.precheck(&params, tip_height);
        let hash = match &checked {
            Err(_) => None,
            Ok(candidate) => match self
                .pool
                .verifier
                .hash(candidate.seed_hash, candidate.hashing_blob.clone())
                .await
            {
                Ok(hash) => Some(hash),
                Err(e) => {
                    tracing::error!(error = %e, "verification failed");
                    self.farewell(id, "Internal error, try again").await;
                    return Next::Close;
                }
            },
        };
        let ctx = SubmitContext {
            pool: &self.pool.config.pool,
            tip_height,
            network_difficulty: self.work.borrow().network_difficulty,
            vardiff: &self.pool.config.vardiff,
            now_ms: now_ms(),
            now: chrono::Utc::now(),
        };
        let Some(session) = self.session.as_mut() else {
            return Next::Close;
        };
        let outcome = session.conclude(
            &params,
            checked.as_ref().map_err(|r| *r),
            hash.as_ref(),
            &ctx,
        );
        self.carry_out(id, outcome).await
    }

    /// Publishes the share, hands a block to the submitter, answers, scores the IP and pushes a
    /// new job when the difficulty changed.
    async fn carry_out(&mut self, id: Id, outcome: Outcome) -> Next {
        let result = match outcome.verdict {
            Verdict::Rejected(r) => r.reason(),
            Verdict::Share | Verdict::Block => "accepted",
        };
        metrics::counter!("adit_pool_shares_total", "result" => result).increment(1);
        if let Some(share) = outcome.share {
            if share.accepted {
                metrics::counter!("adit_pool_accepted_difficulty_total")
                    .increment(share.difficulty);
            }
            if let Err(lost) = self
                .pool
                .events
                .send(adit_schemas::AnyEvent::Share(share))
                .await
            {
                // Only at shutdown, after the publisher has stopped: say so, with the event.
                metrics::counter!("adit_pool_events_lost_total").increment(1);
                tracing::error!(event = ?lost.0, "share event not recorded: the publisher has stopped");
            }
        }
        if let Some(found) = outcome.block {
            metrics::counter!("adit_pool_blocks_found_total").increment(1);
            metrics::counter!("pool_blocks_found_total").increment(1);
            tracing::info!(height = found.height, hash = %found.hash, miner = %found.miner, "block found");
            if let Err(lost) = self.pool.blocks.send(found).await {
                // Only at shutdown: the blob is logged so an operator can still submit it.
                metrics::counter!("adit_pool_events_lost_total").increment(1);
                tracing::error!(height = lost.0.height, blob = %lost.0.blob_hex, "block candidate not submitted: the submitter has stopped; submit this blob to the node by hand");
            }
        }
        let sent = match outcome.verdict {
            Verdict::Rejected(r) => self.error(id, r.message()).await,
            Verdict::Share | Verdict::Block => {
                self.send(&Response::ok(id, json!({"status": "OK"}))).await
            }
        };
        if sent.is_err() {
            return Next::Close;
        }
        if outcome.penalty {
            return self.penalise();
        }
        if matches!(outcome.verdict, Verdict::Share | Verdict::Block) {
            self.pool.guard().record(self.ip, false, Instant::now());
        }
        if outcome.retarget.is_some() && self.push_job().await.is_err() {
            return Next::Close;
        }
        Next::Continue
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether a miner whose login lists `listed` algorithms can mine jobs of `algo`. A miner that
/// lists none is taken to mine Monero's (as XMRig before it sent the list); jobs that say
/// where their nonce is (`must_be_listed`) go only to miners that name their algorithm.
fn understands(listed: &[String], algo: &str, must_be_listed: bool) -> bool {
    if listed.is_empty() {
        return !must_be_listed;
    }
    listed
        .iter()
        .any(|a| a == algo || (algo == crate::codec::ALGO_MONERO && a == "randomx"))
}

#[cfg(test)]
mod tests {
    use super::understands;
    use crate::codec::{ALGO_MONERO, ALGO_OPENSY};

    #[test]
    fn jobs_that_say_where_their_nonce_is_go_only_to_miners_that_name_them() {
        let list = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(understands(&[], ALGO_MONERO, false), "an old XMRig");
        assert!(understands(&list(&["cn/r", "randomx"]), ALGO_MONERO, false));
        assert!(!understands(&list(&["cn/r"]), ALGO_MONERO, false));
        assert!(
            !understands(&[], ALGO_OPENSY, true),
            "silence is not understanding"
        );
        assert!(
            !understands(&list(&["rx/0", "randomx"]), ALGO_OPENSY, true),
            "stock XMRig"
        );
        assert!(understands(
            &list(&["rx/0", ALGO_OPENSY]),
            ALGO_OPENSY,
            true
        ));
    }
}
