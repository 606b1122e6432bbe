//! Property tests of what the coordinator takes from its workers (issue 22): whatever a worker
//! sends, as gRPC bytes or as the decoded fields (a share's job id, nonce and result, a
//! heartbeat's hashrate and hash count), it is judged without a panic. A share passes the
//! checks only from an online worker, with a kept job's id, a nonce of 8 hex digits inside that
//! worker's slice, a result of 64 hex digits and a (job, nonce) not passed before; what would
//! go upstream is in the pool's formats; every refusal is counted once and scored, and enough
//! of them ban the worker. A reported hashrate is kept only if finite and not negative.
//!
//! The gRPC service (`service.rs`, crate-private) and `Coordinator` (built only by `run`, with
//! sockets and RandomX) cannot be called in memory: these drive `cluster::Cluster`, the state
//! every `SubmitShare`, `Heartbeat` and `Register` call goes through, and the generated messages'
//! decoding, which is what the service does with a worker's bytes before that.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use adit_coopmine::Error;
use adit_coopmine::cluster::{Cluster, Pending, Reject, Rules, SLICES, WorkerState};
use adit_coopmine::proto::{
    ClusterStatsRequest, HeartbeatRequest, RegisterRequest, ShareRequest, StreamJobsRequest,
    WorkerStatsRequest,
};
use adit_protocol::{Job, encode_target, meets_difficulty, nonce_hex, parse_nonce};
use proptest::prelude::*;
use prost::Message;

/// Cases per property: `ADIT_FUZZ_CASES` for a long run (`scripts/fuzz.sh`), else CI's share.
use adit_testkit::fuzz_cases as cases;

/// A Monero hashing blob (its nonce at byte 39), as in the cluster's own tests.
const BLOB: &str = "1010dbcd88d806418015bb9ae982a1975da7d79277c2705727a56894ba0fb246adaabb1f4632e3000000002cfaa296f21dda6a68dda5ec811797223469c6fe0cc3e5a42fced6ecd73ba3b801";

/// The workers online in every case (slices 0, 1 and 2).
const WORKERS: &[&str] = &["w1", "w2", "w3"];

/// Texts a worker might send instead of an id, a nonce or a hash.
const ODD: &[&str] = &[
    "",
    "0",
    "0x000001",
    "+1000000",
    " 0100000",
    "-1000000",
    "00000001 ",
    "0000000g",
    "000000001",
    "１２３４５６７８",
    "\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}",
    "\r\n\t\u{1b}\u{7f}\u{85}\u{202e}",
    "w1",
    "1-1",
];

fn job(id: &str, difficulty: u64) -> Job {
    Job {
        blob: BLOB.to_owned(),
        job_id: id.to_owned(),
        target: encode_target(difficulty).unwrap_or_default(),
        algo: "rx/0".to_owned(),
        nonce_offset: None,
        height: 10,
        seed_hash: "00".repeat(32),
        next_seed_hash: None,
    }
}

/// A cluster with `WORKERS` online and two jobs kept, both given to every worker.
struct Setup {
    cluster: Cluster,
    /// The older job (late shares for it still count).
    old: String,
    /// The current job.
    current: String,
}

fn setup(upstream_difficulty: u64) -> Result<Setup, TestCaseError> {
    let mut cluster = Cluster::new(Rules::default());
    let now = Instant::now();
    for w in WORKERS {
        cluster.register(w, 4, now)?;
    }
    let pool = "stratum+tcp://pool.example:3333";
    let old = cluster.new_job(&job("up-1", upstream_difficulty), pool, 1)?;
    for w in WORKERS {
        prop_assert!(cluster.assign(w).is_some());
    }
    let current = cluster.new_job(&job("up-2", upstream_difficulty), pool, 1)?;
    for w in WORKERS {
        prop_assert!(cluster.assign(w).is_some());
    }
    Ok(Setup {
        cluster,
        old,
        current,
    })
}

/// One share as a worker sent it.
struct Sent<'a> {
    worker: &'a str,
    job_id: &'a str,
    nonce: &'a str,
    result: &'a str,
}

/// `s` is `n` hex digits, either case (what `hex::decode_to_slice` takes).
fn is_hex(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `s` is `n` lowercase hex digits (what goes to the pool).
fn is_lower_hex(s: &str, n: usize) -> bool {
    is_hex(s, n) && !s.bytes().any(|b| b.is_ascii_uppercase())
}

/// The coordinator's job ids: `<epoch, lowercase hex>-<sequence>`.
fn is_job_id(id: &str) -> bool {
    id.split_once('-').is_some_and(|(epoch, seq)| {
        !epoch.is_empty()
            && is_lower_hex(epoch, epoch.len())
            && !seq.is_empty()
            && seq.bytes().all(|b| b.is_ascii_digit())
    })
}

// ---------------------------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------------------------

fn hostile() -> BoxedStrategy<String> {
    prop_oneof![
        3 => any::<String>(),
        2 => "[0-9a-fA-F]{0,70}",
        2 => prop::sample::select(ODD).prop_map(str::to_owned),
        1 => Just("x".repeat(10_000)),
    ]
    .boxed()
}

fn worker() -> BoxedStrategy<String> {
    prop_oneof![
        8 => prop::sample::select(WORKERS).prop_map(str::to_owned),
        1 => hostile(),
        1 => Just("W1".to_owned()),
    ]
    .boxed()
}

/// Which job a share names.
#[derive(Debug, Clone)]
enum JobPick {
    Current,
    Old,
    /// Anything else.
    Other(String),
}

/// Which nonce a share carries.
#[derive(Debug, Clone)]
enum NoncePick {
    /// In the sender's slice: the low 24 bits.
    InSlice(u32),
    /// Any 32-bit nonce, well formed.
    Anywhere(u32),
    /// Anything else.
    Other(String),
}

fn job_pick() -> BoxedStrategy<JobPick> {
    prop_oneof![
        4 => Just(JobPick::Current),
        2 => Just(JobPick::Old),
        1 => hostile().prop_map(JobPick::Other),
    ]
    .boxed()
}

fn nonce_pick() -> BoxedStrategy<NoncePick> {
    prop_oneof![
        5 => (0u32..1 << 24).prop_map(NoncePick::InSlice),
        2 => any::<u32>().prop_map(NoncePick::Anywhere),
        2 => hostile().prop_map(NoncePick::Other),
    ]
    .boxed()
}

/// A claimed hash: its top limb (little-endian, the last 8 bytes) decides which difficulties it
/// meets: 0 meets all, `MAX / 7000` the cluster's 5000 but not 10 000.
fn result() -> BoxedStrategy<String> {
    let top = prop_oneof![
        Just(0u64),
        Just(u64::MAX / 7_000),
        Just(u64::MAX / 200_000),
        any::<u64>(),
    ];
    prop_oneof![
        4 => (prop::array::uniform24(any::<u8>()), top).prop_map(|(low, top)| {
            let mut hash = [0u8; 32];
            hash[..24].copy_from_slice(&low);
            hash[24..].copy_from_slice(&top.to_le_bytes());
            hex::encode(hash)
        }),
        1 => "[0-9a-fA-F]{64}",
        1 => "[0-9a-fA-F]{62,66}",
        1 => hostile(),
    ]
    .boxed()
}

/// A share: who, which job, which nonce, what hash, sent in upper case, judged with a hash
/// other than the claimed one.
type Share = (String, JobPick, NoncePick, String, bool, bool);

fn share() -> BoxedStrategy<Share> {
    (
        worker(),
        job_pick(),
        nonce_pick(),
        result(),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
    )
        .boxed()
}

fn upstream_difficulty() -> BoxedStrategy<u64> {
    prop_oneof![
        Just(1u64),
        Just(5_000u64),
        Just(10_000u64),
        Just(100_000u64),
        1u64..u64::MAX,
    ]
    .boxed()
}

/// Hashrates no measurement gives.
const ODD_RATES: &[f64] = &[
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    -0.0,
    0.0,
    -1.0,
    f64::MAX,
    f64::MIN,
    f64::MIN_POSITIVE,
    1e3,
];

/// Hashrates as a worker may report them, NaN and infinities included.
fn rate() -> BoxedStrategy<f64> {
    prop_oneof![
        2 => any::<f64>(),
        1 => prop::sample::select(ODD_RATES),
        1 => any::<u64>().prop_map(f64::from_bits),
    ]
    .boxed()
}

/// Protobuf's varint.
fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out
}

/// A length-delimited field (a string) with number `tag`.
fn field(tag: u8, data: &[u8]) -> Vec<u8> {
    let mut out = vec![(tag << 3) | 2];
    out.extend(varint(data.len() as u64));
    out.extend_from_slice(data);
    out
}

/// The bytes of a string field: text, hex, or anything (invalid UTF-8 included).
fn field_bytes() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        2 => hostile().prop_map(String::into_bytes),
        1 => "[0-9a-f]{8}".prop_map(String::into_bytes),
        1 => "[0-9a-f]{64}".prop_map(String::into_bytes),
        2 => prop::collection::vec(any::<u8>(), 0..80),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// What must hold.
// ---------------------------------------------------------------------------------------------

/// A share that passed the checks: from what was sent, in the formats the cluster requires,
/// ready to hash, and what would go upstream in the pool's formats.
fn check_pending(
    cluster: &Cluster,
    pending: &Pending,
    sent: &Sent<'_>,
    slice: u8,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(pending.worker.as_str(), sent.worker);
    // A job the cluster keeps, named by the coordinator's own id.
    prop_assert_eq!(pending.job_id.as_str(), sent.job_id);
    prop_assert!(is_job_id(&pending.job_id), "job id {:?}", pending.job_id);
    let Some(job) = cluster.jobs().find(|j| j.id == pending.job_id) else {
        return Err(TestCaseError::fail(format!(
            "job {:?} is not kept",
            pending.job_id
        )));
    };
    // The nonce: 8 hex digits, the worker's slice in its top byte.
    prop_assert!(is_hex(sent.nonce, 8), "nonce {:?}", sent.nonce);
    prop_assert_eq!(parse_nonce(sent.nonce).ok(), Some(pending.nonce));
    prop_assert_eq!(pending.nonce >> 24, u32::from(slice));
    // The result: 64 hex digits, the claimed hash.
    prop_assert!(is_hex(sent.result, 64), "result {:?}", sent.result);
    prop_assert_eq!(
        hex::decode(sent.result).ok(),
        Some(pending.claimed.to_vec())
    );
    // The blob to hash: the job's, with the nonce written at its offset and nothing else.
    let at = job.nonce_offset;
    prop_assert_eq!(pending.blob.len(), job.blob.len());
    prop_assert!(pending.blob.len() >= at + 4);
    let written = pending.nonce.to_le_bytes();
    prop_assert_eq!(&pending.blob[at..at + 4], &written[..]);
    prop_assert_eq!(&pending.blob[..at], &job.blob[..at]);
    prop_assert_eq!(&pending.blob[at + 4..], &job.blob[at + 4..]);
    prop_assert_eq!(&pending.seed, &job.seed);
    // Upstream: the pool's job id and connection, 8 and 64 lowercase hex digits.
    prop_assert_eq!(&pending.upstream_job_id, &job.upstream_job_id);
    prop_assert_eq!(pending.upstream_generation, job.upstream_generation);
    let nonce = nonce_hex(pending.nonce);
    prop_assert!(is_lower_hex(&nonce, 8), "{nonce:?}");
    prop_assert_eq!(parse_nonce(&nonce).ok(), Some(pending.nonce));
    prop_assert!(is_lower_hex(&hex::encode(pending.claimed), 64));
    prop_assert!(
        pending.share_difficulty >= 1 && pending.share_difficulty <= pending.upstream_difficulty,
        "share difficulty {} against upstream {}",
        pending.share_difficulty,
        pending.upstream_difficulty
    );
    Ok(())
}

/// A refusal: its reason holds of what was sent, and it is scored unless the worker could not
/// help it; reaching the ban score bans the worker and frees its slice.
fn check_refusal(
    cluster: &Cluster,
    reject: &Reject,
    before: Option<&WorkerState>,
    sent: &Sent<'_>,
    passed: &HashSet<(String, u32)>,
) -> Result<(), TestCaseError> {
    prop_assert!(!reject.reason().is_empty());
    let kept = cluster.jobs().any(|j| j.id == sent.job_id);
    let nonce = parse_nonce(sent.nonce).ok();
    match reject {
        Reject::UnknownWorker => {
            prop_assert!(
                before.is_none_or(|w| w.slice.is_none() && !w.banned),
                "{before:?}"
            );
        }
        Reject::Banned => prop_assert!(before.is_some_and(|w| w.banned), "{before:?}"),
        Reject::UnknownJob => prop_assert!(!kept, "job {:?} is kept", sent.job_id),
        Reject::JobNotGiven => prop_assert!(kept, "job {:?} is not kept", sent.job_id),
        Reject::MalformedNonce => {
            prop_assert!(!is_hex(sent.nonce, 8), "nonce {:?}", sent.nonce);
        }
        Reject::OutsideSlice => {
            let slice = before.and_then(|w| w.slice);
            prop_assert!(
                nonce.is_some_and(|n| slice.is_some_and(|s| n >> 24 != u32::from(s))),
                "nonce {:?} in slice {slice:?}",
                sent.nonce
            );
        }
        Reject::MalformedResult => {
            prop_assert!(!is_hex(sent.result, 64), "result {:?}", sent.result);
        }
        Reject::Duplicate => {
            prop_assert!(
                nonce.is_some_and(|n| passed.contains(&(sent.job_id.to_owned(), n))),
                "({}, {:?}) never passed",
                sent.job_id,
                sent.nonce
            );
        }
        Reject::ForgedHash | Reject::LowDifficulty => {
            return Err(TestCaseError::fail(format!(
                "the checks before hashing refused with {reject:?}"
            )));
        }
    }
    if let (Some(before), Some(after)) = (before, cluster.worker(sent.worker)) {
        let rules = cluster.rules();
        let free = matches!(
            reject,
            Reject::Banned | Reject::UnknownWorker | Reject::UnknownJob
        );
        let score = if free {
            before.score
        } else {
            before.score.saturating_add(rules.penalty)
        };
        prop_assert_eq!(after.score, score);
        prop_assert_eq!(after.invalid, before.invalid + 1);
        if after.score >= rules.ban_score {
            prop_assert!(after.banned && after.slice.is_none(), "{after:?}");
        }
    }
    Ok(())
}

/// Judges a passed share by `hash` (the claimed one, or a forgery): a forgery is refused; the
/// claimed hash is valid exactly when it meets the cluster's difficulty, and forwarded exactly
/// when it meets the pool's.
fn judge(cluster: &mut Cluster, pending: &Pending, forge: bool) -> Result<(), TestCaseError> {
    let mut hash = pending.claimed;
    if forge {
        hash[31] ^= 0x80;
    }
    let valid_before = cluster.totals.valid;
    let forwarded_before = cluster.totals.forwarded;
    let invalid_before = cluster.totals.invalid;
    let verdict = cluster.judge(pending, &hash, Instant::now());
    if forge {
        prop_assert_eq!(verdict, Err(Reject::ForgedHash));
        prop_assert_eq!(cluster.totals.invalid, invalid_before + 1);
        return Ok(());
    }
    let meets_share = meets_difficulty(&hash, pending.share_difficulty);
    let meets_upstream = meets_difficulty(&hash, pending.upstream_difficulty);
    match verdict {
        Ok(valid) => {
            prop_assert!(meets_share);
            prop_assert_eq!(valid.forward, meets_upstream);
            prop_assert_eq!(cluster.totals.valid, valid_before + 1);
            prop_assert_eq!(
                cluster.totals.forwarded,
                forwarded_before + u64::from(valid.forward)
            );
        }
        Err(reject) => {
            prop_assert_eq!(reject, Reject::LowDifficulty);
            prop_assert!(!meets_share);
            // The pool's difficulty is never below the cluster's.
            prop_assert!(!meets_upstream);
            prop_assert_eq!(cluster.totals.invalid, invalid_before + 1);
        }
    }
    Ok(())
}

/// Re-encoding what decoded is stable: the message means the same after a round trip.
fn round_trips<M: Message + Default>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(message) = M::decode(bytes) {
        let encoded = message.encode_to_vec();
        let again = M::decode(&encoded[..])?;
        prop_assert_eq!(again.encode_to_vec(), encoded);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(1_000)))]

    #[test]
    fn registrations_get_distinct_slices_up_to_the_limit(
        ids in prop::collection::vec(prop_oneof![any::<String>(), "w[0-9]{1,3}"], 0..300),
        threads in any::<u32>(),
    ) {
        let mut cluster = Cluster::new(Rules::default());
        let now = Instant::now();
        let mut slices: HashMap<String, u8> = HashMap::new();
        for id in &ids {
            match cluster.register(id, threads, now) {
                Ok(slice) => match slices.get(id) {
                    // Re-registering keeps the slice.
                    Some(&had) => prop_assert_eq!(slice, had),
                    None => {
                        prop_assert!(!slices.values().any(|&s| s == slice), "slice {slice} twice");
                        slices.insert(id.clone(), slice);
                    }
                },
                Err(Error::ClusterFull { slices: all }) => {
                    prop_assert_eq!(all, SLICES);
                    prop_assert_eq!(slices.len(), SLICES);
                    prop_assert!(!slices.contains_key(id));
                }
                Err(other) => return Err(TestCaseError::fail(format!("{id:?}: {other}"))),
            }
        }
        prop_assert_eq!(cluster.online(), slices.len());
    }

    #[test]
    fn request_bytes_decode_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        round_trips::<ShareRequest>(&bytes)?;
        round_trips::<HeartbeatRequest>(&bytes)?;
        round_trips::<RegisterRequest>(&bytes)?;
        round_trips::<WorkerStatsRequest>(&bytes)?;
        round_trips::<StreamJobsRequest>(&bytes)?;
        round_trips::<ClusterStatsRequest>(&bytes)?;
        // What decodes goes on to the cluster, as the service passes it.
        if let Ok(share) = ShareRequest::decode(&bytes[..]) {
            let Setup { mut cluster, .. } = setup(100_000)?;
            let invalid = cluster.totals.invalid;
            let sent = Sent {
                worker: "w1",
                job_id: &share.job_id,
                nonce: &share.nonce,
                result: &share.result,
            };
            match cluster.check("w1", &share.job_id, &share.nonce, &share.result) {
                Ok(pending) => check_pending(&cluster, &pending, &sent, 0)?,
                Err(_) => prop_assert_eq!(cluster.totals.invalid, invalid + 1),
            }
        }
        if let Ok(beat) = HeartbeatRequest::decode(&bytes[..]) {
            let Setup { mut cluster, .. } = setup(100_000)?;
            let (rate, hashes) = (beat.hashrate_hs, beat.hashes_total);
            prop_assert!(cluster.heartbeat("w1", rate, hashes, Instant::now()));
            let kept = cluster.worker("w1").map(|w| w.reported_hashrate);
            prop_assert!(kept.is_some_and(|r| r.is_finite() && r >= 0.0), "{kept:?}");
        }
    }

    #[test]
    fn share_strings_must_be_utf8(
        job_id in field_bytes(),
        nonce in field_bytes(),
        result in field_bytes(),
        current in any::<bool>(),
    ) {
        let Setup { mut cluster, current: current_id, .. } = setup(100_000)?;
        let job_id = if current { current_id.into_bytes() } else { job_id };
        let wire = [field(1, &job_id), field(2, &nonce), field(3, &result)].concat();
        let utf8 = [&job_id, &nonce, &result].iter().all(|b| std::str::from_utf8(b).is_ok());
        match ShareRequest::decode(&wire[..]) {
            Ok(share) => {
                prop_assert!(utf8);
                prop_assert_eq!(share.job_id.as_bytes(), &job_id[..]);
                prop_assert_eq!(share.nonce.as_bytes(), &nonce[..]);
                prop_assert_eq!(share.result.as_bytes(), &result[..]);
                let sent = Sent {
                    worker: "w1",
                    job_id: &share.job_id,
                    nonce: &share.nonce,
                    result: &share.result,
                };
                let invalid = cluster.totals.invalid;
                match cluster.check("w1", &share.job_id, &share.nonce, &share.result) {
                    Ok(pending) => check_pending(&cluster, &pending, &sent, 0)?,
                    Err(_) => prop_assert_eq!(cluster.totals.invalid, invalid + 1),
                }
            }
            Err(_) => prop_assert!(!utf8, "a share of UTF-8 strings was refused"),
        }
    }

    #[test]
    fn heartbeat_numbers_arrive_as_sent(bits in any::<u64>(), hashes in any::<u64>()) {
        // hashrate_hs = 1 (fixed64), hashes_total = 2 (varint).
        let mut wire = vec![0x09u8];
        wire.extend(bits.to_le_bytes());
        wire.push(0x10);
        wire.extend(varint(hashes));
        let beat = HeartbeatRequest::decode(&wire[..])?;
        prop_assert_eq!(beat.hashrate_hs.to_bits(), bits);
        prop_assert_eq!(beat.hashes_total, hashes);
        let Setup { mut cluster, .. } = setup(100_000)?;
        let known = cluster.heartbeat("w1", beat.hashrate_hs, beat.hashes_total, Instant::now());
        prop_assert!(known);
        let Some(w) = cluster.worker("w1") else {
            return Err(TestCaseError::fail("w1 is gone"));
        };
        let rate = beat.hashrate_hs;
        let want = if rate.is_finite() && rate >= 0.0 { rate } else { 0.0 };
        prop_assert_eq!(w.reported_hashrate.to_bits(), want.to_bits());
        prop_assert_eq!(w.hashes_total, hashes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2_000)))]

    #[test]
    fn heartbeats_keep_only_plausible_rates(
        beats in prop::collection::vec((worker(), rate(), any::<u64>()), 1..8),
        ban_w2 in any::<bool>(),
    ) {
        let Setup { mut cluster, current, .. } = setup(100_000)?;
        if ban_w2 {
            // Ten malformed nonces: 10 points each, banned at 100.
            for _ in 0..10 {
                prop_assert_eq!(
                    cluster.check("w2", &current, "zz", "").map(|_| ()),
                    Err(Reject::MalformedNonce)
                );
            }
            prop_assert!(cluster.worker("w2").is_some_and(|w| w.banned));
        }
        for (worker, rate, hashes) in beats {
            let before = cluster.worker(&worker).cloned();
            let online = before.as_ref().is_some_and(|w| w.slice.is_some() && !w.banned);
            let known = cluster.heartbeat(&worker, rate, hashes, Instant::now());
            prop_assert_eq!(known, online);
            match (before, cluster.worker(&worker)) {
                (None, after) => prop_assert!(after.is_none(), "a heartbeat made a worker"),
                (Some(_), None) => return Err(TestCaseError::fail("a heartbeat lost a worker")),
                (Some(before), Some(after)) => {
                    let r = after.reported_hashrate;
                    prop_assert!(r.is_finite() && r >= 0.0, "kept {r} from {rate}");
                    if known {
                        let want = if rate.is_finite() && rate >= 0.0 { rate } else { 0.0 };
                        prop_assert_eq!(r.to_bits(), want.to_bits());
                        prop_assert_eq!(after.hashes_total, hashes);
                    } else {
                        prop_assert_eq!(after.hashes_total, before.hashes_total);
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(3_000)))]

    #[test]
    fn shares_are_judged_in_order(
        upstream in upstream_difficulty(),
        shares in prop::collection::vec(share(), 1..24),
    ) {
        let Setup { mut cluster, old, current } = setup(upstream)?;
        let mut passed: HashSet<(String, u32)> = HashSet::new();
        for (worker, job_pick, nonce_pick, result, upper, forge) in shares {
            let before = cluster.worker(&worker).cloned();
            let slice = before.as_ref().and_then(|w| w.slice).unwrap_or(0);
            let job_id = match job_pick {
                JobPick::Current => current.clone(),
                JobPick::Old => old.clone(),
                JobPick::Other(s) => s,
            };
            let mut nonce = match nonce_pick {
                NoncePick::InSlice(low) => nonce_hex((u32::from(slice) << 24) | low),
                NoncePick::Anywhere(n) => nonce_hex(n),
                NoncePick::Other(s) => s,
            };
            let mut result = result;
            if upper {
                nonce = nonce.to_ascii_uppercase();
                result = result.to_ascii_uppercase();
            }
            let sent = Sent { worker: &worker, job_id: &job_id, nonce: &nonce, result: &result };
            let invalid_before = cluster.totals.invalid;
            match cluster.check(&worker, &job_id, &nonce, &result) {
                Ok(pending) => {
                    let online = before.as_ref().is_some_and(|w| w.slice.is_some() && !w.banned);
                    prop_assert!(online, "a share from {worker:?}, not online, passed");
                    prop_assert_eq!(cluster.totals.invalid, invalid_before);
                    check_pending(&cluster, &pending, &sent, slice)?;
                    prop_assert!(
                        passed.insert((pending.job_id.clone(), pending.nonce)),
                        "({}, {:08x}) passed twice",
                        pending.job_id,
                        pending.nonce
                    );
                    judge(&mut cluster, &pending, forge)?;
                }
                Err(reject) => {
                    prop_assert_eq!(cluster.totals.invalid, invalid_before + 1);
                    check_refusal(&cluster, &reject, before.as_ref(), &sent, &passed)?;
                }
            }
            // A banned worker gets no work, no hearing and no new slice.
            if cluster.worker(&worker).is_some_and(|w| w.banned) {
                prop_assert!(cluster.assign(&worker).is_none());
                prop_assert!(!cluster.heartbeat(&worker, 1.0, 1, Instant::now()));
                let banned = matches!(
                    cluster.register(&worker, 1, Instant::now()),
                    Err(Error::Banned { .. })
                );
                prop_assert!(banned);
            }
        }
    }
}
