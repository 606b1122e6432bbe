//! One miner's session as pure decisions: login, the validation order of a submitted share
//! before and after its RandomX hash, what follows from it (the reply, the share event, a
//! block candidate, a penalty, a new job), and vardiff. No sockets, no clocks: `now` is passed
//! in. The connection hashes between [`Session::precheck`] and [`Session::conclude`] and
//! carries out the [`Outcome`].

use std::sync::Arc;

use adit_schemas::Share;
use chrono::{DateTime, Utc};

use crate::codec::{Job, LoginParams, SubmitParams};
use crate::error::Result;
use crate::jobs::{BlobId, JobFactory, RecentJobs, Work};
use crate::target::meets_difficulty;
use crate::vardiff::{VardiffConfig, VardiffState, retarget};

/// Why a share was refused; the messages are the ones XMRig understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not logged in, or the session id does not match.
    Unauthenticated,
    /// The job id is unknown to this session (XMRig reconnects on this).
    InvalidJob,
    /// The job's block is no longer the chain tip.
    Stale,
    /// The nonce is not 8 hex characters.
    MalformedNonce,
    /// The result is not 64 hex characters.
    MalformedResult,
    /// The nonce was already submitted for this job.
    Duplicate,
    /// The claimed result is not the RandomX hash of the blob with that nonce.
    WrongHash,
    /// The hash does not meet the share target.
    LowDifficulty,
}

impl Reject {
    /// The message sent to the miner.
    pub fn message(self) -> &'static str {
        match self {
            Self::Unauthenticated => "Unauthenticated",
            Self::InvalidJob => "Invalid job id",
            Self::Stale => "Block expired",
            Self::MalformedNonce => "Invalid nonce; is miner not compatible with NiceHash?",
            Self::MalformedResult => "Malformed result",
            Self::Duplicate => "Duplicate share",
            Self::WrongHash => "Incorrect hash",
            Self::LowDifficulty => "Low difficulty share",
        }
    }

    /// A short reason for events and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidJob => "invalid_job",
            Self::Stale => "stale",
            Self::MalformedNonce => "malformed_nonce",
            Self::MalformedResult => "malformed_result",
            Self::Duplicate => "duplicate",
            Self::WrongHash => "wrong_hash",
            Self::LowDifficulty => "low_difficulty",
        }
    }

    /// Whether it counts against the miner's ban score (stale shares happen to honest miners).
    pub fn is_invalid(self) -> bool {
        !matches!(self, Self::Stale | Self::Unauthenticated)
    }
}

/// Who a session belongs to, from its login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Wallet address or account.
    pub miner: String,
    /// Rig or worker name.
    pub worker: String,
    /// Difficulty the miner asked for with a `+difficulty` suffix.
    pub fixed_difficulty: Option<u64>,
    /// The team the session's shares count for (`team=NAME` in the login's `pass`).
    pub team: Option<String>,
}

/// Why a login is refused, as the miner is told.
pub(crate) const BAD_ADDRESS: &str = "Invalid login: expected a wallet address";
/// Why a login naming a malformed team is refused, as the miner is told.
pub(crate) const BAD_TEAM: &str = "Invalid team: team=NAME takes 1-64 of A-Z a-z 0-9 _ -";

/// The team `pass` names (`team=NAME`, alone or after the worker's name and a `;`:
/// `rig1;team=NAME`) and what is left of `pass` for the worker's name.
fn split_team(pass: &str) -> Result<(&str, Option<String>), &'static str> {
    let (rest, team) = match pass.rsplit_once("team=") {
        None => return Ok((pass, None)),
        Some((rest, team)) => (rest.strip_suffix(';').unwrap_or(rest), team),
    };
    if !adit_schemas::names::is_token(team) || rest.contains("team=") {
        return Err(BAD_TEAM);
    }
    Ok((rest, Some(team.to_string())))
}

/// Splits an XMRig login (`address[+difficulty][.worker]`, worker also from `rigid` or `pass`;
/// a team from `pass`, see [`split_team`]); the refusal to send the miner when it is not one.
pub fn parse_login(params: &LoginParams) -> Result<Identity, &'static str> {
    let (login, dotted_worker) = match params.login.split_once('.') {
        Some((l, w)) => (l, Some(w)),
        None => (params.login.as_str(), None),
    };
    let (miner, fixed) = match login.split_once('+') {
        Some((m, d)) => (m, d.parse::<u64>().ok().filter(|d| *d > 0)),
        None => (login, None),
    };
    if miner.is_empty()
        || miner.len() > 128
        || !miner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(BAD_ADDRESS);
    }
    let (pass, team) = split_team(&params.pass)?;
    let worker = params
        .rigid
        .clone()
        .or_else(|| dotted_worker.map(str::to_string))
        .filter(|w| !w.is_empty())
        .or_else(|| Some(pass.to_string()).filter(|p| !p.is_empty() && p != "x"))
        .unwrap_or_else(|| "default".into());
    let worker: String = worker
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(64)
        .collect();
    Ok(Identity {
        miner: miner.to_string(),
        worker: if worker.is_empty() {
            "default".into()
        } else {
            worker
        },
        fixed_difficulty: fixed,
        team,
    })
}

/// A share that passed every check that needs no hashing.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The hashing blob with the nonce in place.
    pub hashing_blob: Vec<u8>,
    /// The work the job was cut from and the job's blob id: the block blob is cut again from
    /// them when the share is a block ([`Candidate::block_blob`]).
    pub work: Arc<Work>,
    /// The job's blob id.
    pub blob_id: BlobId,
    /// The submitted nonce.
    pub nonce: [u8; 4],
    /// RandomX seed for the job.
    pub seed_hash: [u8; 32],
    /// The result the miner claims.
    pub claimed: [u8; 32],
    /// Share difficulty.
    pub difficulty: u64,
    /// Network difficulty of the job's height.
    pub network_difficulty: u64,
    /// Height of the job.
    pub height: u64,
    /// Block reward of the job's template.
    pub reward: u64,
}

impl Candidate {
    /// The block blob with the nonce in place, cut again from the job's template (only a
    /// block needs it). It cannot fail where cutting the job did not.
    pub fn block_blob(&self) -> Result<Vec<u8>> {
        Ok(self
            .work
            .template
            .with_extra_nonce(&self.blob_id.0)?
            .block_blob_with_nonce(self.nonce))
    }
}

/// The verdict on a hashed candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A valid share.
    Share,
    /// A valid share that also meets the network target: a block.
    Block,
    /// Refused.
    Rejected(Reject),
}

/// Judges a candidate by its recomputed `hash`: same as claimed, then share target, then the
/// chain's block rule.
pub fn judge(candidate: &Candidate, hash: &[u8; 32]) -> Verdict {
    if hash != &candidate.claimed {
        return Verdict::Rejected(Reject::WrongHash);
    }
    if !meets_difficulty(hash, candidate.difficulty) {
        return Verdict::Rejected(Reject::LowDifficulty);
    }
    if candidate.work.template.is_block(hash) {
        Verdict::Block
    } else {
        Verdict::Share
    }
}

/// A share that is also a block, for the node to judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockFound {
    /// The full block blob (hex) to submit.
    pub blob_hex: String,
    /// Its id (hex).
    pub hash: String,
    /// Height.
    pub height: u64,
    /// Miner who found it.
    pub miner: String,
    /// Worker who found it.
    pub worker: String,
    /// Job of the share that found it.
    pub job_id: String,
    /// Nonce of the share that found it, as recorded in the share event.
    pub nonce: String,
    /// Reward in atomic units.
    pub reward: u64,
    /// Network difficulty.
    pub network_difficulty: u64,
}

/// What a share is judged with besides the session: the pool, the chain and the clock.
#[derive(Debug, Clone, Copy)]
pub struct SubmitContext<'a> {
    /// The pool's name, for the share event.
    pub pool: &'a str,
    /// Height of the current work.
    pub tip_height: u64,
    /// Network difficulty of the current work (vardiff's ceiling).
    pub network_difficulty: u64,
    /// Vardiff rules.
    pub vardiff: &'a VardiffConfig,
    /// Monotonic milliseconds, for vardiff.
    pub now_ms: u64,
    /// Wall-clock time, for the event.
    pub now: DateTime<Utc>,
}

/// Everything that follows from one submission, for the connection to carry out in order:
/// publish the share, hand over the block, answer, score the IP, push a new job.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The verdict: the answer is `{"status":"OK"}` or the refusal's message.
    pub verdict: Verdict,
    /// The share event, when the submission named a job and a nonce.
    pub share: Option<Share>,
    /// The block candidate, when the share is one.
    pub block: Option<BlockFound>,
    /// Whether the IP's ban score goes up (an invalid share) — a valid one takes one off.
    pub penalty: bool,
    /// The session's new difficulty, when vardiff changed it: push a new job.
    pub retarget: Option<u64>,
}

/// A session's id: a number, sent to the miner as 16 lowercase hex digits (kept as the
/// number: every logged-in miner holds one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionId(pub u64);

impl SessionId {
    /// The id as the miner is sent it.
    pub fn text(self) -> String {
        format!("{:016x}", self.0)
    }

    /// Whether `text` is this id exactly as it was sent.
    pub fn is(self, text: &str) -> bool {
        text.len() == 16 && text == self.text()
    }
}

/// One logged-in miner.
#[derive(Debug)]
pub struct Session {
    /// Session id sent at login.
    pub id: SessionId,
    /// Who it is.
    pub identity: Identity,
    /// Vardiff state (current difficulty inside).
    pub vardiff: VardiffState,
    /// Its recent jobs.
    pub jobs: RecentJobs,
}

impl Session {
    /// A session for `identity` starting at `difficulty`.
    pub fn new(id: SessionId, identity: Identity, difficulty: u64, now_ms: u64) -> Self {
        Self {
            id,
            identity,
            vardiff: VardiffState::new(difficulty, now_ms),
            jobs: RecentJobs::new(crate::jobs::JOBS_KEPT),
        }
    }

    /// Cuts a new job from `work` at the session's difficulty and remembers it.
    pub fn new_job(&mut self, factory: &JobFactory, work: &Arc<Work>) -> Result<Job> {
        let (job, record) = factory.job(work, self.vardiff.difficulty)?;
        self.jobs.push(record);
        Ok(job)
    }

    /// Every check before hashing, in DESIGN.md's order: session, job known, not stale, nonce
    /// well formed, result well formed, not a duplicate. `tip_height` is the current work's
    /// height.
    pub fn precheck(
        &mut self,
        params: &SubmitParams,
        tip_height: u64,
    ) -> Result<Candidate, Reject> {
        if !self.id.is(&params.id) {
            return Err(Reject::Unauthenticated);
        }
        let job = self
            .jobs
            .get_mut(&params.job_id)
            .ok_or(Reject::InvalidJob)?;
        if job.work.height < tip_height {
            return Err(Reject::Stale);
        }
        let nonce = params.nonce_bytes().map_err(|_| Reject::MalformedNonce)?;
        let claimed = params.result_bytes().map_err(|_| Reject::MalformedResult)?;
        if !job.nonces.insert(nonce) {
            return Err(Reject::Duplicate);
        }
        Ok(Candidate {
            hashing_blob: job.hashing_blob_with_nonce(nonce),
            work: job.work.clone(),
            blob_id: job.blob_id,
            nonce,
            seed_hash: job.work.seed_hash,
            claimed,
            difficulty: job.difficulty,
            network_difficulty: job.work.network_difficulty,
            height: job.work.height,
            reward: job.work.reward,
        })
    }

    /// Everything after hashing: the verdict on `checked` (with `hash`, its recomputed RandomX
    /// hash, when it passed [`Session::precheck`]), the share event, the block candidate, the
    /// penalty and vardiff.
    pub fn conclude(
        &mut self,
        params: &SubmitParams,
        checked: std::result::Result<&Candidate, Reject>,
        hash: Option<&[u8; 32]>,
        ctx: &SubmitContext<'_>,
    ) -> Outcome {
        let verdict = match (checked, hash) {
            (Err(reject), _) => Verdict::Rejected(reject),
            (Ok(candidate), Some(hash)) => judge(candidate, hash),
            (Ok(_), None) => Verdict::Rejected(Reject::WrongHash),
        };
        let candidate = checked.ok();
        let accepted = !matches!(verdict, Verdict::Rejected(_));
        // What the share was judged against: its job's difficulty and height, also for a stale
        // or duplicate share whose job the session still remembers.
        let (difficulty, height) = candidate
            .map(|c| (c.difficulty, c.height))
            .or_else(|| self.jobs.judged_against(&params.job_id))
            .unwrap_or((self.vardiff.difficulty, ctx.tip_height));
        // What a per-share scheme prices an accepted share on: its job's template.
        let priced = candidate.filter(|_| accepted);
        let share = Share {
            pool: ctx.pool.to_owned(),
            miner: self.identity.miner.clone(),
            worker: self.identity.worker.clone(),
            job_id: recorded(&params.job_id, 64),
            nonce: recorded(&params.nonce, 16).to_ascii_lowercase(),
            difficulty,
            height,
            accepted,
            reason: match verdict {
                Verdict::Rejected(r) => Some(r.reason().to_owned()),
                Verdict::Share | Verdict::Block => None,
            },
            ts: ctx.now,
            network_difficulty: priced.map(|c| c.network_difficulty),
            reward: priced.map(|c| c.reward),
            subsidy: priced.map(|c| c.work.subsidy),
            team: self.identity.team.clone(),
        };
        // Refused at parsing (no job or nonce): nothing a share event could name.
        let share = (!share.job_id.is_empty() && !share.nonce.is_empty()).then_some(share);
        let block = match (verdict, candidate, &share) {
            (Verdict::Block, Some(c), Some(share)) => match c.block_blob() {
                Ok(blob) => Some(BlockFound {
                    blob_hex: hex::encode(blob),
                    hash: hex::encode(c.work.template.block_id(&c.hashing_blob)),
                    height: c.height,
                    miner: self.identity.miner.clone(),
                    worker: self.identity.worker.clone(),
                    job_id: share.job_id.clone(),
                    nonce: share.nonce.clone(),
                    reward: c.reward,
                    network_difficulty: c.network_difficulty,
                }),
                Err(e) => {
                    tracing::error!(error = %e, height = c.height, "a block could not be cut again from its template; not submitted");
                    None
                }
            },
            _ => None,
        };
        let retarget = if accepted {
            self.accepted(difficulty, ctx.vardiff, ctx.now_ms, ctx.network_difficulty)
        } else {
            None
        };
        Outcome {
            verdict,
            share,
            block,
            penalty: matches!(verdict, Verdict::Rejected(r) if r.is_invalid()),
            retarget,
        }
    }

    /// Records an accepted share and retargets; returns the new difficulty when it changes
    /// (a fixed `+difficulty` from the login is kept).
    pub fn accepted(
        &mut self,
        difficulty: u64,
        config: &VardiffConfig,
        now_ms: u64,
        network: u64,
    ) -> Option<u64> {
        self.vardiff.record_share(difficulty);
        self.tick(config, now_ms, network)
    }

    /// Retargets on time alone (a miner that has gone quiet); returns the new difficulty when it
    /// changes (a fixed `+difficulty` from the login is kept).
    pub fn tick(&mut self, config: &VardiffConfig, now_ms: u64, network: u64) -> Option<u64> {
        if self.identity.fixed_difficulty.is_some() {
            return None;
        }
        let r = retarget(config, &self.vardiff, now_ms, network);
        self.vardiff = r.state;
        r.new_difficulty
    }
}

/// A miner's job id or nonce as the share event records it: at most `chars` characters, each
/// control character written as `%XX`, so a refused submission is still recorded but its text
/// never reaches a header, a log line or a table as it was sent (issue 22).
fn recorded(sent: &str, chars: usize) -> String {
    let kept: String = sent.chars().take(chars).collect();
    adit_schemas::names::header_text(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(l: &str, pass: &str, rigid: Option<&str>) -> LoginParams {
        serde_json::from_value(serde_json::json!({"login": l, "pass": pass, "agent": "XMRig/6.21.0", "algo": ["rx/0"], "rigid": rigid})).unwrap()
    }

    #[test]
    fn logins_split_into_miner_worker_and_difficulty() {
        let id = parse_login(&login("44abc+25000.rig1", "x", None)).unwrap();
        assert_eq!(
            (id.miner.as_str(), id.worker.as_str(), id.fixed_difficulty),
            ("44abc", "rig1", Some(25000))
        );
        let id = parse_login(&login("44abc", "x", Some("rack-7"))).unwrap();
        assert_eq!((id.worker.as_str(), id.fixed_difficulty), ("rack-7", None));
        let id = parse_login(&login("44abc", "worker9", None)).unwrap();
        assert_eq!(id.worker, "worker9");
        assert_eq!(parse_login(&login("", "x", None)), Err(BAD_ADDRESS));
        assert_eq!(
            parse_login(&login("bad address!", "x", None)),
            Err(BAD_ADDRESS)
        );
    }

    #[test]
    fn a_team_comes_from_pass_alone_or_after_the_worker_and_a_bad_one_is_refused() {
        let id = parse_login(&login("44abc", "team=moneroworld", None)).unwrap();
        assert_eq!(
            (id.worker.as_str(), id.team.as_deref()),
            ("default", Some("moneroworld"))
        );
        let id = parse_login(&login("44abc", "rig1;team=red-1", None)).unwrap();
        assert_eq!(
            (id.worker.as_str(), id.team.as_deref()),
            ("rig1", Some("red-1"))
        );
        let id = parse_login(&login("44abc.rig2", "x", None)).unwrap();
        assert_eq!((id.worker.as_str(), id.team), ("rig2", None));
        for bad in [
            "team=",
            "team=a b",
            "team=x;team=y",
            "rig;team=<script>",
            &format!("team={}", "t".repeat(65)),
        ] {
            assert_eq!(
                parse_login(&login("44abc", bad, None)),
                Err(BAD_TEAM),
                "{bad}"
            );
        }
    }

    /// A session on a simulated-chain template at network difficulty `network`, with one job
    /// at share difficulty 1; returns it and the job.
    fn session_with_job(network: u64) -> (Session, Job) {
        let sim = crate::simchain::SimChain::new(crate::simchain::SimConfig {
            difficulty: network,
            ..Default::default()
        })
        .unwrap();
        let t = sim
            .get_block_template("44abc", crate::jobs::BLOB_ID_BYTES)
            .unwrap();
        let work = Arc::new(Work::from_template(&t, t.expected_reward).unwrap());
        let identity = parse_login(&login("44abc.rig1", "x", None)).unwrap();
        let mut session = Session::new(SessionId(1), identity, 1, 0);
        let job = session.new_job(&JobFactory::new(1), &work).unwrap();
        (session, job)
    }

    fn submit(job: &Job, nonce: &str, result: &str) -> SubmitParams {
        SubmitParams {
            id: SessionId(1).text(),
            job_id: job.job_id.clone(),
            nonce: nonce.into(),
            result: result.into(),
            algo: None,
        }
    }

    #[test]
    fn conclude_turns_a_verdict_into_everything_that_follows() {
        let vardiff = VardiffConfig::default();
        let ctx = SubmitContext {
            pool: "main",
            tip_height: 1,
            network_difficulty: 1,
            vardiff: &vardiff,
            now_ms: 1_000,
            now: Utc::now(),
        };
        // Network difficulty 1: any share whose hash is right is a block.
        let (mut session, job) = session_with_job(1);
        let params = submit(&job, "01000000", &"00".repeat(32));
        let candidate = session.precheck(&params, 1).unwrap();
        let hash = candidate.claimed;
        let out = session.conclude(&params, Ok(&candidate), Some(&hash), &ctx);
        assert_eq!(out.verdict, Verdict::Block);
        assert!(!out.penalty);
        let share = out.share.unwrap();
        assert!(share.accepted && share.reason.is_none());
        assert_eq!(
            (share.miner.as_str(), share.worker.as_str()),
            ("44abc", "rig1")
        );
        let block = out.block.unwrap();
        assert_eq!(
            (block.nonce.as_str(), block.job_id),
            ("01000000", job.job_id.clone())
        );

        // A forged hash: refused, scored, recorded as a rejected share, no block.
        let params = submit(&job, "02000000", &"11".repeat(32));
        let candidate = session.precheck(&params, 1).unwrap();
        let out = session.conclude(&params, Ok(&candidate), Some(&[0x22; 32]), &ctx);
        assert_eq!(out.verdict, Verdict::Rejected(Reject::WrongHash));
        assert!(out.penalty && out.block.is_none() && out.retarget.is_none());
        assert_eq!(out.share.unwrap().reason.as_deref(), Some("wrong_hash"));

        // Stale: refused without a penalty, and the event still names the job's difficulty.
        let params = submit(&job, "03000000", &"00".repeat(32));
        let stale = session.precheck(&params, 2).map(|_| ()).unwrap_err();
        let out = session.conclude(&params, Err(stale), None, &ctx);
        assert_eq!(out.verdict, Verdict::Rejected(Reject::Stale));
        assert!(!out.penalty);
        assert_eq!(out.share.unwrap().difficulty, 1);

        // Nothing to name: no event.
        let params = submit(&job, "", "");
        let out = session.conclude(&params, Err(Reject::MalformedNonce), None, &ctx);
        assert!(out.share.is_none() && out.penalty);
    }

    #[test]
    fn reject_messages_are_xmrigs() {
        assert_eq!(Reject::LowDifficulty.message(), "Low difficulty share");
        assert_eq!(Reject::Duplicate.message(), "Duplicate share");
        assert_eq!(Reject::Stale.message(), "Block expired");
        assert!(!Reject::Stale.is_invalid());
        assert!(Reject::WrongHash.is_invalid());
    }
}
