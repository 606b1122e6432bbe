//! One solution, one credit (issue 56): a stateful property test of the real session code
//! against a model miner. Arbitrary sequences of logins, getjobs, honest submits, replays of
//! earlier solutions under any job, forged results, stale submits, reconnects, template changes
//! and pool restarts run through [`Session::precheck`] and [`Session::conclude`] as the server
//! calls them, and after every step:
//!
//! - every credited share is work the miners really hashed, and no hashed blob is credited
//!   twice: the credited difficulty never exceeds the distinct work solved;
//! - the ledger keys shares are deduplicated by downstream (the PPLNS key, the share event's
//!   job id and nonce) never repeat among credited shares;
//! - an honest share (a fresh nonce on a job the session holds, at the tip) is credited, once.
//!
//! The proof of work is a stand-in (Keccak of the hashing blob, `blob::cn_fast_hash`): what is
//! under test is which blob a share is judged against, and that is a function of the job alone.
//! RandomX itself is checked on the real binary (`tests/it/hostile.rs`). `PROPTEST_CASES` runs it
//! longer: `PROPTEST_CASES=100000 cargo nextest run -p adit-stratum -E 'test(credit)'`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use chrono::Utc;
use proptest::prelude::*;

use crate::codec::{Job, LoginParams, SubmitParams};
use crate::jobs::{JobFactory, Work};
use crate::session::{Session, SessionId, SubmitContext, Verdict, parse_login};
use crate::simchain::{SimChain, SimConfig};
use crate::vardiff::VardiffConfig;

/// Miners in the model.
const MINERS: usize = 3;
/// Jobs a session keeps.
const RECENT: usize = crate::jobs::JOBS_KEPT;

/// One step of the model miners and the pool.
#[derive(Debug, Clone)]
enum Op {
    /// Miner logs in (a new connection; an open one is replaced).
    Login(usize),
    /// Miner asks for a new job.
    GetJob(usize),
    /// Miner hashes `nonce` honestly on one of the jobs it was given and submits it.
    Honest { miner: usize, job: usize, nonce: u8 },
    /// Miner resends an earlier solution (anyone's) under one of its jobs' ids.
    Replay {
        miner: usize,
        solution: usize,
        job: usize,
    },
    /// Miner submits a result it did not compute.
    Forged { miner: usize, job: usize, nonce: u8 },
    /// The chain moves on: new work, older jobs stale.
    NewTemplate,
    /// The pool process restarts: sessions gone, a new factory, the same template.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let miner = 0..MINERS;
    prop_oneof![
        2 => miner.clone().prop_map(Op::Login),
        3 => miner.clone().prop_map(Op::GetJob),
        6 => (miner.clone(), 0..8usize, 0..6u8).prop_map(|(miner, job, nonce)| Op::Honest { miner, job, nonce }),
        6 => (miner.clone(), 0..64usize, 0..8usize).prop_map(|(miner, solution, job)| Op::Replay { miner, solution, job }),
        1 => (miner.clone(), 0..8usize, 0..6u8).prop_map(|(miner, job, nonce)| Op::Forged { miner, job, nonce }),
        1 => Just(Op::NewTemplate),
        1 => Just(Op::Restart),
    ]
}

/// The stand-in proof of work.
fn pow(hashing_blob: &[u8]) -> [u8; 32] {
    crate::blob::cn_fast_hash(hashing_blob)
}

/// A job as the miner holds it: what it was sent.
#[derive(Debug, Clone)]
struct HeldJob {
    job: Job,
}

impl HeldJob {
    /// The hashing blob of this job with `nonce` in place, as a miner writes it.
    fn hashing_blob(&self, nonce: [u8; 4]) -> Vec<u8> {
        let mut blob = hex::decode(&self.job.blob).expect("the pool sends hex blobs");
        let offset = adit_protocol::work::nonce_offset(&blob).expect("a Monero blob");
        blob[offset..offset + 4].copy_from_slice(&nonce);
        blob
    }
}

/// A miner's side: its connection's session (on the pool) and the jobs it was sent.
#[derive(Debug, Default)]
struct Miner {
    /// The pool's session for its connection, if logged in.
    session: Option<Session>,
    /// Jobs it was sent, newest last (the pool keeps the last [`RECENT`]).
    jobs: VecDeque<HeldJob>,
}

/// A solution a miner found: replayable by anyone.
#[derive(Debug, Clone)]
struct Solution {
    nonce: String,
    result: String,
}

/// The pool, the chain and what the model knows.
struct World {
    chain: SimChain,
    factory: JobFactory,
    work: Arc<Work>,
    vardiff: VardiffConfig,
    miners: Vec<Miner>,
    sessions: u64,
    /// Hashing blobs (nonce in place) the miners hashed honestly: the distinct work solved.
    solved: HashSet<Vec<u8>>,
    /// Hashing blobs credited, each with how often.
    credited: HashMap<Vec<u8>, u32>,
    /// The downstream keys (job id, nonce) of credited shares.
    keys: HashSet<(String, String)>,
    /// Every solution seen, for replays.
    solutions: Vec<Solution>,
    /// Per job id, the nonces submitted to it (what the session must refuse as a duplicate).
    submitted: HashMap<String, HashSet<[u8; 4]>>,
}

impl World {
    fn new() -> Self {
        let chain = SimChain::new(SimConfig {
            difficulty: u64::MAX / 4,
            ..Default::default()
        })
        .unwrap();
        let work = Self::fetch(&chain);
        Self {
            chain,
            factory: JobFactory::random(),
            work,
            vardiff: VardiffConfig::default(),
            miners: (0..MINERS).map(|_| Miner::default()).collect(),
            sessions: 0,
            solved: HashSet::new(),
            credited: HashMap::new(),
            keys: HashSet::new(),
            solutions: Vec::new(),
            submitted: HashMap::new(),
        }
    }

    fn fetch(chain: &SimChain) -> Arc<Work> {
        let t = chain
            .get_block_template("44abc", crate::jobs::BLOB_ID_BYTES)
            .unwrap();
        Arc::new(Work::from_template(&t, t.expected_reward).unwrap())
    }

    fn give_job(&mut self, m: usize) {
        let Some(session) = self.miners[m].session.as_mut() else {
            return;
        };
        let job = session.new_job(&self.factory, &self.work).unwrap();
        let miner = &mut self.miners[m];
        miner.jobs.push_back(HeldJob { job });
        if miner.jobs.len() > RECENT {
            miner.jobs.pop_front();
        }
    }

    fn login(&mut self, m: usize) {
        let params: LoginParams = serde_json::from_value(serde_json::json!({
            "login": format!("44miner{m}+1.rig"), "pass": "x", "agent": "model"
        }))
        .unwrap();
        let identity = parse_login(&params).unwrap();
        self.sessions += 1;
        let session = Session::new(SessionId(self.sessions), identity, 1, 0);
        self.miners[m] = Miner {
            session: Some(session),
            jobs: VecDeque::new(),
        };
        self.give_job(m);
    }

    /// Submits `(job_id, nonce, result)` on miner `m`'s session as the server does; returns
    /// whether it was credited. `honest_blob` is the blob the miner really hashed, if it did.
    fn submit(&mut self, m: usize, job_id: &str, nonce: &str, result: &str) -> Option<bool> {
        let tip = self.work.height;
        let vardiff = self.vardiff.clone();
        let session = self.miners[m].session.as_mut()?;
        let params = SubmitParams {
            id: session.id.text(),
            job_id: job_id.to_owned(),
            nonce: nonce.to_owned(),
            result: result.to_owned(),
            algo: None,
        };
        let checked = session.precheck(&params, tip);
        let hash = checked.as_ref().ok().map(|c| pow(&c.hashing_blob));
        let ctx = SubmitContext {
            pool: "model",
            tip_height: tip,
            network_difficulty: self.work.network_difficulty,
            vardiff: &vardiff,
            now_ms: 1,
            now: Utc::now(),
        };
        let outcome = session.conclude(
            &params,
            checked.as_ref().map_err(|r| *r),
            hash.as_ref(),
            &ctx,
        );
        let credited = matches!(outcome.verdict, Verdict::Share | Verdict::Block);
        if credited {
            let candidate = checked.expect("a credited share passed the precheck");
            assert!(
                self.solved.contains(&candidate.hashing_blob),
                "credited work nobody solved: job {job_id} nonce {nonce}"
            );
            let times = self.credited.entry(candidate.hashing_blob).or_default();
            *times += 1;
            assert_eq!(*times, 1, "one solution credited twice: job {job_id}");
            let share = outcome.share.expect("a credited share is an event");
            assert!(share.accepted);
            assert!(
                self.keys.insert((share.job_id, share.nonce)),
                "a downstream key repeated: job {job_id} nonce {nonce}"
            );
        }
        Some(credited)
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Login(m) => self.login(m),
            Op::GetJob(m) => self.give_job(m),
            Op::Honest { miner, job, nonce } => {
                let Some(held) = pick(self.miners[miner].jobs.iter(), job).cloned() else {
                    return;
                };
                let nonce_bytes = [nonce, 0, 0, 0];
                let blob = held.hashing_blob(nonce_bytes);
                let result = hex::encode(pow(&blob));
                self.solved.insert(blob);
                let fresh = self
                    .submitted
                    .entry(held.job.job_id.clone())
                    .or_default()
                    .insert(nonce_bytes);
                let current =
                    held.job.height >= self.work.height && self.miners[miner].session.is_some();
                let nonce = hex::encode(nonce_bytes);
                self.solutions.push(Solution {
                    nonce: nonce.clone(),
                    result: result.clone(),
                });
                let credited = self.submit(miner, &held.job.job_id, &nonce, &result);
                // On a job its session holds, at the tip, with a nonce new to the job.
                if fresh && current {
                    assert_eq!(
                        credited,
                        Some(true),
                        "an honest share was refused: job {} nonce {nonce}",
                        held.job.job_id
                    );
                }
            }
            Op::Replay {
                miner,
                solution,
                job,
            } => {
                let (Some(held), Some(s)) = (
                    pick(self.miners[miner].jobs.iter(), job).cloned(),
                    pick(self.solutions.iter(), solution).cloned(),
                ) else {
                    return;
                };
                let mut nonce_bytes = [0u8; 4];
                hex::decode_to_slice(&s.nonce, &mut nonce_bytes).unwrap();
                self.submitted
                    .entry(held.job.job_id.clone())
                    .or_default()
                    .insert(nonce_bytes);
                // Credited only if this job's blob with that nonce is work someone solved and
                // was never credited: the assertions in `submit` say so.
                self.submit(miner, &held.job.job_id, &s.nonce, &s.result);
            }
            Op::Forged { miner, job, nonce } => {
                let Some(held) = pick(self.miners[miner].jobs.iter(), job).cloned() else {
                    return;
                };
                let nonce_bytes = [nonce, 0xff, 0, 0];
                self.submitted
                    .entry(held.job.job_id.clone())
                    .or_default()
                    .insert(nonce_bytes);
                let forged = hex::encode([nonce; 32]);
                let credited =
                    self.submit(miner, &held.job.job_id, &hex::encode(nonce_bytes), &forged);
                assert_ne!(credited, Some(true), "a forged result was credited");
            }
            Op::NewTemplate => {
                self.chain.advance(1);
                self.work = Self::fetch(&self.chain);
                for m in 0..MINERS {
                    self.give_job(m);
                }
            }
            Op::Restart => {
                self.factory = JobFactory::random();
                self.sessions = 0;
                for miner in &mut self.miners {
                    // The miner keeps the jobs it was sent and may still submit to them.
                    miner.session = None;
                }
            }
        }
        let work: u64 = self.credited.len() as u64;
        assert!(work <= self.solved.len() as u64);
    }
}

/// Item `i` (modulo their number) of `items`, if there are any.
fn pick<'a, T>(mut items: impl ExactSizeIterator<Item = &'a T>, i: usize) -> Option<&'a T> {
    match items.len() {
        0 => None,
        len => items.nth(i % len),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    /// Credited work never exceeds the distinct work solved, no solution or downstream key is
    /// credited twice, and every honest share is credited once.
    #[test]
    fn one_solution_is_credited_once_whatever_it_is_sent_under(ops in prop::collection::vec(op(), 1..80)) {
        let mut world = World::new();
        for op in &ops {
            world.step(op);
        }
    }
}

/// The exploit of issue 56, named: two getjobs in a row gave two job ids over one blob, and a
/// share solved on the first was credited under both.
#[test]
fn a_share_is_not_credited_again_under_the_next_job() {
    let mut world = World::new();
    world.login(0);
    world.give_job(0);
    let (first, second) = {
        let jobs = &world.miners[0].jobs;
        (jobs[0].clone(), jobs[1].clone())
    };
    assert_ne!(
        first.job.blob, second.job.blob,
        "each job has a blob of its own"
    );
    let blob = first.hashing_blob([7, 0, 0, 0]);
    let result = hex::encode(pow(&blob));
    world.solved.insert(blob);
    assert_eq!(
        world.submit(0, &first.job.job_id, "07000000", &result),
        Some(true)
    );
    assert_eq!(
        world.submit(0, &second.job.job_id, "07000000", &result),
        Some(false)
    );
    assert_eq!(
        world.submit(0, &first.job.job_id, "07000000", &result),
        Some(false)
    );
    assert_eq!(world.credited.len(), 1);
}
