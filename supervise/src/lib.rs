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
}

impl Vitals {
    /// An empty set (nothing supervised yet: all well).
    pub fn new() -> Self {
        Self::default()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut Part)) {
        let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        let part = parts.entry(name.to_string()).or_insert(Part {
            up: false,
            restarts: 0,
            last_error: None,
        });
        f(part);
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

/// Runs the task `make` builds as part `name` until it returns, restarting it (a fresh one from
/// `make`) each time it panics, after a backoff; `Err` once it panicked more than
/// `policy.max_restarts` times within `policy.window`. Each restart is logged and counted in
/// `adit_task_restarts_total{task}`, and `vitals` says the part is down until it runs again.
pub async fn supervise<F, Fut>(
    name: &str,
    vitals: &Vitals,
    policy: Policy,
    mut make: F,
) -> Result<(), GaveUp>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut deaths: Vec<Instant> = Vec::new();
    let mut backoff = policy.first_backoff;
    loop {
        vitals.update(name, |p| p.up = true);
        let died = match tokio::spawn(make()).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_panic() => panic_message(e.into_panic()),
            // Cancelled: the runtime is shutting down.
            Err(_) => return Ok(()),
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
        tracing::error!(task = name, reason = %died, ?backoff, "task panicked; restarting it");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(policy.max_backoff);
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
    match tokio::spawn(task).await {
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
