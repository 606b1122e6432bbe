//! Supervision of long-lived tasks (issue 22): a task that panics is restarted with backoff and
//! counted, the process's vital signs say which part is down while it is, and a part that
//! keeps dying is given up on, so its caller stops the process loudly (a non-zero exit that
//! systemd or the container runtime answers) instead of leaving it half alive.
//!
//! A part that cannot be restarted on its own (it owns a channel or state that died with it)
//! runs as [`essential`]: its failure stops its owner, which then fails loudly.
//!
//! This crate does no I/O of its own and knows no part of adit: the pool, the pipelines and
//! the API hand it their tasks and read its [`Vitals`].

use adit_retry::Backoff;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// What is known of one supervised part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Part {
    /// Whether it runs now.
    pub up: bool,
    /// How often it was restarted since the process started.
    pub restarts: u64,
    /// Why it last died, if it did.
    pub last_error: Option<String>,
}

/// The state of every supervised part of the process, shared by the supervisors that write it
/// and `/ready`, which reads it.
#[derive(Debug, Clone, Default)]
pub struct Vitals {
    /// Parts by name.
    parts: Arc<Mutex<BTreeMap<String, Part>>>,
    /// Panics to inject, for tests of the supervision itself.
    faults: Faults,
}

impl Vitals {
    /// An empty set (nothing supervised yet: all well).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty set whose supervisors inject `faults` into the parts they run.
    pub fn with_faults(faults: Faults) -> Self {
        Self {
            faults,
            ..Self::default()
        }
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut Part)) {
        let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        let part = parts.entry(name.to_string()).or_insert(Part {
            up: false,
            restarts: 0,
            last_error: None,
        });
        f(part);
        up_gauge(name, part.up);
    }

    /// Records the state of a part that is checked rather than run (free disk space, a
    /// service adit depends on): up when `state` is `Ok`, down with the reason otherwise. Its
    /// restart count is left alone. Returns whether it was up before (true for a part not
    /// reported yet), so the caller can tell a change of state.
    pub fn report(&self, name: &str, state: Result<(), String>) -> bool {
        let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        let was_up = parts.get(name).is_none_or(|p| p.up);
        let part = parts.entry(name.to_string()).or_insert(Part {
            up: true,
            restarts: 0,
            last_error: None,
        });
        part.up = state.is_ok();
        part.last_error = state.err();
        up_gauge(name, part.up);
        was_up
    }

    /// Every part with its state.
    pub fn parts(&self) -> BTreeMap<String, Part> {
        self.parts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The names of the parts that are down now.
    pub fn down(&self) -> Vec<String> {
        self.parts()
            .into_iter()
            .filter(|(_, p)| !p.up)
            .map(|(name, _)| name)
            .collect()
    }
}

/// `adit_part_up{part}`: 1 while the part is up, 0 while it is down (what `/ready` says, for
/// Prometheus's rules).
fn up_gauge(name: &str, up: bool) {
    metrics::gauge!("adit_part_up", "part" => name.to_string()).set(if up { 1.0 } else { 0.0 });
}

/// Panics injected into supervised parts, so a test can kill each part from inside and watch
/// the restart, the metric and `/ready` (issue 22). Parsed from a spec such as
/// `pool_publisher,pipeline:landing=3`: each named part panics [`FAULT_DELAY`] after each of
/// its next N starts (1 when no count is given). The binary reads it from `ADIT_FAULTS` in
/// debug builds only.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Panics still to inject, by part.
    pending: Arc<Mutex<BTreeMap<String, u32>>>,
}

/// How long after its start a part with an injected fault panics.
pub const FAULT_DELAY: Duration = Duration::from_millis(1500);

impl Faults {
    /// Reads a spec: comma-separated `part` or `part=count` (count 1 to 1000).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut pending = BTreeMap::new();
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (part, count) = match item.split_once('=') {
                Some((part, count)) => {
                    let count: u32 = count
                        .trim()
                        .parse()
                        .ok()
                        .filter(|c| (1..=1000).contains(c))
                        .ok_or_else(|| format!("fault count for {part:?} must be 1-1000"))?;
                    (part.trim(), count)
                }
                None => (item, 1),
            };
            if part.is_empty() {
                return Err(format!("fault {item:?} names no part"));
            }
            pending.insert(part.to_string(), count);
        }
        Ok(Self {
            pending: Arc::new(Mutex::new(pending)),
        })
    }

    /// Whether this start of `part` gets a fault (and counts it taken).
    fn take(&self, part: &str) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        match pending.get_mut(part) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }

    /// `task`, made to panic [`FAULT_DELAY`] after it starts if a fault is due for `part`.
    fn arm<T, Fut>(&self, part: &str, task: Fut) -> impl Future<Output = T> + Send + 'static
    where
        T: Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let fault = self.take(part).then(|| format!("injected fault in {part}"));
        async move {
            let Some(fault) = fault else {
                return task.await;
            };
            tokio::select! {
                out = task => out,
                () = tokio::time::sleep(FAULT_DELAY) => panic!("{fault}"),
            }
        }
    }
}

/// How a part is restarted, and when it is given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The wait before the first restart; doubled each time, up to `max_backoff`.
    pub first_backoff: Duration,
    /// The longest wait between restarts.
    pub max_backoff: Duration,
    /// The most restarts within `window` before the part is given up on.
    pub max_restarts: u32,
    /// The window `max_restarts` counts in.
    pub window: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_restarts: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// A part died more often than its policy allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GaveUp {
    /// The part.
    pub part: String,
    /// Why it last died.
    pub reason: String,
}

impl std::fmt::Display for GaveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} kept failing and was given up on: {}",
            self.part, self.reason
        )
    }
}

impl std::error::Error for GaveUp {}

/// Runs the task `make` builds as part `name` until it returns (its output is returned),
/// restarting it (a fresh one from `make`) each time it panics, after a backoff; `Err` once it
/// panicked more than `policy.max_restarts` times within `policy.window`, or when the runtime
/// cancelled it. Each restart is logged and counted in `adit_task_restarts_total{task}`, and
/// `vitals` says the part is down until it runs again.
pub async fn supervise<T, F, Fut>(
    name: &str,
    vitals: &Vitals,
    policy: Policy,
    mut make: F,
) -> Result<T, GaveUp>
where
    T: Send + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let mut deaths: Vec<Instant> = Vec::new();
    let mut backoff = Backoff::new(policy.first_backoff, policy.max_backoff).waits();
    loop {
        vitals.update(name, |p| p.up = true);
        let died = match tokio::spawn(vitals.faults.arm(name, make())).await {
            Ok(out) => return Ok(out),
            Err(e) if e.is_panic() => panic_message(e.into_panic()),
            // Cancelled: the runtime is shutting down.
            Err(_) => {
                return Err(GaveUp {
                    part: name.to_string(),
                    reason: "cancelled".to_string(),
                });
            }
        };
        let now = Instant::now();
        deaths.retain(|at| now.duration_since(*at) < policy.window);
        deaths.push(now);
        metrics::counter!("adit_task_restarts_total", "task" => name.to_string()).increment(1);
        vitals.update(name, |p| {
            p.up = false;
            p.restarts += 1;
            p.last_error = Some(died.clone());
        });
        if deaths.len() > policy.max_restarts as usize {
            tracing::error!(task = name, reason = %died, "task keeps failing; giving up");
            return Err(GaveUp {
                part: name.to_string(),
                reason: died,
            });
        }
        let wait = backoff.next_wait();
        tracing::error!(task = name, reason = %died, backoff = ?wait, "task panicked; restarting it");
        tokio::time::sleep(wait).await;
    }
}

/// Runs `task` as part `name`, a part the process cannot do without and that cannot simply be
/// restarted (it owns a channel or state that died with it): if it panics, `vitals` shows it
/// down and `stop` is cancelled, so its owner shuts down and reports the failure instead of
/// running on half alive. Returns why it failed, or `Ok` when it finished.
pub async fn essential<Fut>(
    name: &str,
    vitals: &Vitals,
    stop: &CancellationToken,
    task: Fut,
) -> Result<(), GaveUp>
where
    Fut: Future<Output = ()> + Send + 'static,
{
    vitals.update(name, |p| p.up = true);
    match tokio::spawn(vitals.faults.arm(name, task)).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let reason = if e.is_panic() {
                panic_message(e.into_panic())
            } else {
                "cancelled".to_string()
            };
            metrics::counter!("adit_task_restarts_total", "task" => name.to_string()).increment(1);
            vitals.update(name, |p| {
                p.up = false;
                p.last_error = Some(reason.clone());
            });
            tracing::error!(task = name, %reason, "essential task failed; stopping its owner");
            stop.cancel();
            Err(GaveUp {
                part: name.to_string(),
                reason,
            })
        }
    }
}

/// A process's named [`essential`] parts under one stop token: the first to fail stops the
/// others' owner through it, and [`Essentials::join`] says which failed and why.
pub struct Essentials {
    vitals: Vitals,
    stop: CancellationToken,
    running: Vec<tokio::task::JoinHandle<Result<(), GaveUp>>>,
}

impl Essentials {
    /// No part yet; a failing part cancels `stop`.
    pub fn new(vitals: &Vitals, stop: CancellationToken) -> Self {
        Self {
            vitals: vitals.clone(),
            stop,
            running: Vec::new(),
        }
    }

    /// Starts `task` as the essential part `name`.
    pub fn spawn<Fut>(&mut self, name: &'static str, task: Fut)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (vitals, stop) = (self.vitals.clone(), self.stop.clone());
        self.running.push(tokio::spawn(async move {
            essential(name, &vitals, &stop, task).await
        }));
    }

    /// Waits for every part, in the order they were started; why each that failed did.
    pub async fn join(self) -> Vec<String> {
        let mut failed = Vec::new();
        for part in self.running {
            match part.await {
                Ok(Ok(())) => {}
                Ok(Err(gave_up)) => failed.push(gave_up.to_string()),
                Err(e) => failed.push(e.to_string()),
            }
        }
        failed
    }
}

/// The text a panic carried.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn quick(max_restarts: u32) -> Policy {
        Policy {
            first_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            max_restarts,
            window: Duration::from_secs(60),
        }
    }

    /// Issue 22: a task that dies is restarted, counted and shown down meanwhile.
    #[tokio::test]
    async fn a_panicking_task_is_restarted_and_counted() {
        let vitals = Vitals::new();
        let runs = Arc::new(AtomicU32::new(0));
        let (seen_down, watch) = (Arc::new(Mutex::new(Vec::new())), vitals.clone());
        let result = supervise("publisher", &vitals, quick(5), || {
            let (runs, seen_down, watch) = (runs.clone(), seen_down.clone(), watch.clone());
            async move {
                seen_down.lock().unwrap().push(watch.down());
                if runs.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("injected fault {}", runs.load(Ordering::SeqCst));
                }
            }
        })
        .await;
        assert_eq!(result, Ok(()));
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        let part = &vitals.parts()["publisher"];
        assert_eq!(part.restarts, 2);
        assert!(part.up);
        assert_eq!(part.last_error.as_deref(), Some("injected fault 2"));
        assert!(vitals.down().is_empty());
        // While running, each incarnation saw itself up.
        assert!(seen_down.lock().unwrap().iter().all(Vec::is_empty));
    }

    #[tokio::test]
    async fn an_essential_task_that_dies_stops_its_owner() {
        let vitals = Vitals::new();
        let stop = CancellationToken::new();
        let failed = essential("submitter", &vitals, &stop, async { panic!("injected") }).await;
        assert_eq!(failed.unwrap_err().reason, "injected");
        assert!(stop.is_cancelled());
        assert_eq!(vitals.down(), vec!["submitter".to_string()]);
        let fine = CancellationToken::new();
        assert!(essential("tip", &vitals, &fine, async {}).await.is_ok());
        assert!(!fine.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn injected_faults_kill_a_part_as_often_as_asked() {
        let vitals = Vitals::with_faults(Faults::parse("payer=2, other").unwrap());
        let runs = Arc::new(AtomicU32::new(0));
        let out = supervise("payer", &vitals, quick(5), || {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(FAULT_DELAY * 2).await;
                "finished"
            }
        })
        .await;
        assert_eq!(out, Ok("finished"));
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        let part = &vitals.parts()["payer"];
        assert_eq!(part.restarts, 2);
        assert_eq!(part.last_error.as_deref(), Some("injected fault in payer"));
        // A part that finishes before its fault is due is not killed.
        let quick_part = supervise("other", &vitals, quick(5), || async { 7 }).await;
        assert_eq!(quick_part, Ok(7));
        assert_eq!(vitals.parts()["other"].restarts, 0);
    }

    #[test]
    fn fault_specs_are_checked() {
        assert!(Faults::parse("").is_ok());
        assert!(Faults::parse("a=0").is_err());
        assert!(Faults::parse("a=1001").is_err());
        assert!(Faults::parse("a=x").is_err());
        assert!(Faults::parse("=3").is_err());
        let faults = Faults::parse("a=2,b").unwrap();
        assert!(faults.take("a") && faults.take("a") && !faults.take("a"));
        assert!(faults.take("b") && !faults.take("b") && !faults.take("c"));
    }

    #[tokio::test]
    async fn a_task_that_keeps_dying_is_given_up_on_and_shown_down() {
        let vitals = Vitals::new();
        let result = supervise("payer", &vitals, quick(3), || async {
            panic!("always");
        })
        .await;
        let gave_up = result.unwrap_err();
        assert_eq!(gave_up.part, "payer");
        assert_eq!(gave_up.reason, "always");
        assert_eq!(vitals.down(), vec!["payer".to_string()]);
        assert_eq!(vitals.parts()["payer"].restarts, 4);
    }
}
