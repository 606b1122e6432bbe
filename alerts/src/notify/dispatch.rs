//! Grouping and timing of notifications in Alertmanager's way, as pure code: each alert event
//! is routed to a receiver and a group (its `group_by` label values); a new group is told
//! after `group_wait`, a changed one no sooner than `group_interval` after its last
//! notification, one still firing again every `repeat_interval`; alerts matching an active
//! silence are left out (and a notification with nothing left is recorded as silenced).

use std::collections::BTreeMap;

use adit_schemas::alerts::AlertEvent;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::config::Route;
use crate::machine::Labels;

/// A silence: alerts whose labels carry every matcher are not notified until `ends`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Silence {
    /// Its id.
    pub id: String,
    /// label → value, all required.
    pub matchers: BTreeMap<String, String>,
    /// From.
    pub starts: DateTime<Utc>,
    /// Until.
    pub ends: DateTime<Utc>,
    /// Who.
    pub by: String,
    /// Why.
    pub comment: String,
}

impl Silence {
    /// Whether it silences `labels` at `now`.
    pub fn mutes(&self, labels: &Labels, now: DateTime<Utc>) -> bool {
        self.starts <= now
            && now < self.ends
            && self.matchers.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// A notification to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The receiver.
    pub receiver: String,
    /// `<receiver>:<group labels JSON>`.
    pub group: String,
    /// The alerts firing, latest state each.
    pub firing: Vec<AlertEvent>,
    /// The alerts resolved since the last notification.
    pub resolved: Vec<AlertEvent>,
    /// Silenced: nothing is sent, the attempt is recorded.
    pub silenced: bool,
}

impl Notification {
    /// Whether any alert in it is critical.
    pub fn critical(&self) -> bool {
        self.firing.iter().any(|a| a.severity == "critical")
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        let names = |alerts: &[AlertEvent]| {
            let mut n: Vec<String> = alerts.iter().map(|a| a.rule.clone()).collect();
            n.dedup();
            n.join(", ")
        };
        match (self.firing.len(), self.resolved.len()) {
            (0, r) => format!("[RESOLVED] {r} alert(s): {}", names(&self.resolved)),
            (f, 0) => format!("[FIRING:{f}] {}", names(&self.firing)),
            (f, r) => format!("[FIRING:{f}] {} ({r} resolved)", names(&self.firing)),
        }
    }
}

#[derive(Debug, Clone)]
struct Group {
    receiver: String,
    alerts: BTreeMap<String, (Labels, AlertEvent)>,
    /// Firing alerts an operator acknowledged: not repeated (their resolution is told).
    acked: std::collections::BTreeSet<String>,
    last_sent: Option<DateTime<Utc>>,
    next: DateTime<Utc>,
    dirty: bool,
}

/// The groups of every receiver.
#[derive(Debug, Default)]
pub struct Dispatcher {
    groups: BTreeMap<String, Group>,
}

fn chrono_of(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or_default()
}

impl Dispatcher {
    /// The receivers for `labels`, as Alertmanager routes: the branches whose matchers all
    /// hold, in order, up to the first that does not say `continue`; the default receiver when
    /// none matched. Each receiver once.
    pub fn receivers<'a>(route: &'a Route, labels: &Labels) -> Vec<&'a str> {
        let mut out: Vec<&str> = Vec::new();
        for branch in &route.routes {
            if !branch
                .matchers
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
            {
                continue;
            }
            if !out.contains(&branch.receiver.as_str()) {
                out.push(&branch.receiver);
            }
            if !branch.continue_matching {
                break;
            }
        }
        if out.is_empty() {
            out.push(&route.receiver);
        }
        out
    }

    /// Takes in one alert event (a `pending` one is not notified).
    pub fn observe(&mut self, route: &Route, event: AlertEvent, now: DateTime<Utc>) {
        if event.state == "pending" {
            return;
        }
        let labels: Labels = serde_json::from_str(&event.labels).unwrap_or_default();
        let key_labels: Labels = route
            .group_by
            .iter()
            .filter_map(|k| labels.get(k).map(|v| (k.clone(), v.clone())))
            .collect();
        let key_labels = serde_json::to_string(&key_labels).unwrap_or_default();
        for receiver in Self::receivers(route, &labels) {
            let key = format!("{receiver}:{key_labels}");
            self.observe_in(route, receiver, key, labels.clone(), event.clone(), now);
        }
    }

    /// Takes `event` into the group `key` of `receiver`.
    fn observe_in(
        &mut self,
        route: &Route,
        receiver: &str,
        key: String,
        labels: Labels,
        event: AlertEvent,
        now: DateTime<Utc>,
    ) {
        let group = self.groups.entry(key).or_insert_with(|| Group {
            receiver: receiver.to_string(),
            alerts: BTreeMap::new(),
            acked: Default::default(),
            last_sent: None,
            next: now + chrono_of(route.group_wait),
            dirty: false,
        });
        if event.state == "acknowledged" {
            group.acked.insert(event.id);
            return;
        }
        if event.state == "resolved" {
            group.acked.remove(&event.id);
        }
        group.alerts.insert(event.id.clone(), (labels, event));
        group.dirty = true;
        if let Some(sent) = group.last_sent {
            let soonest = (sent + chrono_of(route.group_interval)).max(now);
            group.next = group.next.min(soonest);
        }
    }

    /// The notifications due at `now`; the groups move on as if they were sent.
    pub fn due(
        &mut self,
        route: &Route,
        silences: &[Silence],
        now: DateTime<Utc>,
    ) -> Vec<Notification> {
        let mut out = Vec::new();
        let mut empty = Vec::new();
        for (key, group) in &mut self.groups {
            if group.next > now {
                continue;
            }
            let muted = |labels: &Labels| silences.iter().any(|s| s.mutes(labels, now));
            let (mut firing, mut resolved, mut silenced) = (Vec::new(), Vec::new(), false);
            for (labels, event) in group.alerts.values() {
                if event.state == "firing" && group.acked.contains(&event.id) {
                    continue;
                }
                if muted(labels) {
                    silenced = true;
                    continue;
                }
                match event.state.as_str() {
                    "firing" => firing.push(event.clone()),
                    _ => resolved.push(event.clone()),
                }
            }
            if group.dirty || !firing.is_empty() {
                let nothing = firing.is_empty() && resolved.is_empty();
                if !nothing || silenced {
                    out.push(Notification {
                        receiver: group.receiver.clone(),
                        group: key.clone(),
                        firing,
                        resolved,
                        silenced: nothing,
                    });
                }
            }
            group.alerts.retain(|_, (_, e)| e.state == "firing");
            let alerts = &group.alerts;
            group.acked.retain(|id| alerts.contains_key(id));
            group.dirty = false;
            group.last_sent = Some(now);
            group.next = now + chrono_of(route.repeat_interval);
            if group.alerts.is_empty() {
                empty.push(key.clone());
            }
        }
        for key in empty {
            self.groups.remove(&key);
        }
        out
    }

    /// How many alerts are firing, and how many of them critical (for the heartbeat); an
    /// alert routed to several receivers counts once.
    pub fn firing(&self) -> (usize, usize) {
        let firing: BTreeMap<&str, &AlertEvent> = self
            .groups
            .values()
            .flat_map(|g| g.alerts.values().map(|(_, e)| e))
            .filter(|e| e.state == "firing")
            .map(|e| (e.id.as_str(), e))
            .collect();
        let critical = firing.values().filter(|e| e.severity == "critical").count();
        (firing.len(), critical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn event(id: &str, site: &str, state: &str, severity: &str) -> AlertEvent {
        let t: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        AlertEvent {
            id: id.into(),
            group: "farm".into(),
            rule: "HighTemperature".into(),
            state: state.into(),
            severity: severity.into(),
            labels: serde_json::to_string(&BTreeMap::from([
                ("alertname", "HighTemperature"),
                ("site", site),
                ("severity", severity),
            ]))
            .unwrap(),
            annotations: "{}".into(),
            value: Some(41.0),
            active_at: t,
            ts: t,
            by: None,
            note: None,
        }
    }

    fn route() -> Route {
        Route {
            receiver: "ops".into(),
            group_by: vec!["alertname".into()],
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(3600),
            routes: vec![super::super::config::SubRoute {
                matchers: BTreeMap::from([("severity".into(), "critical".into())]),
                receiver: "pager".into(),
                continue_matching: false,
            }],
        }
    }

    #[test]
    fn a_group_waits_then_repeats_and_tells_of_its_resolution() {
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let s = |n: i64| t0 + chrono::Duration::seconds(n);
        let r = route();
        let mut d = Dispatcher::default();
        d.observe(&r, event("a", "s1", "firing", "critical"), s(0));
        d.observe(&r, event("b", "s2", "firing", "critical"), s(10));
        assert!(d.due(&r, &[], s(29)).is_empty(), "group_wait");
        let n = d.due(&r, &[], s(30));
        assert_eq!(n.len(), 1, "both in one group");
        assert_eq!((n[0].receiver.as_str(), n[0].firing.len()), ("pager", 2));
        assert!(n[0].critical());
        assert!(
            d.due(&r, &[], s(600)).is_empty(),
            "nothing new before the repeat"
        );
        // One resolves: told after group_interval from the last notification.
        d.observe(&r, event("a", "s1", "resolved", "critical"), s(100));
        assert!(d.due(&r, &[], s(329)).is_empty());
        let n = d.due(&r, &[], s(330));
        assert_eq!((n[0].firing.len(), n[0].resolved.len()), (1, 1));
        assert_eq!(n[0].summary(), "[FIRING:1] HighTemperature (1 resolved)");
        // Still firing: repeated after repeat_interval.
        assert_eq!(d.due(&r, &[], s(330 + 3600)).len(), 1);
        assert_eq!(d.firing(), (1, 1));
    }

    #[test]
    fn a_branch_that_says_continue_lets_later_branches_take_the_alert_too() {
        use super::super::config::SubRoute;
        let branch = |key: &str, value: &str, receiver: &str, go_on: bool| SubRoute {
            matchers: BTreeMap::from([(key.into(), value.into())]),
            receiver: receiver.into(),
            continue_matching: go_on,
        };
        let r = Route {
            routes: vec![
                branch("severity", "critical", "webhook", true),
                branch("severity", "critical", "sms", true),
                branch("site", "s1", "site-1-team", false),
                branch("severity", "critical", "never", false),
            ],
            ..route()
        };
        let labels = |severity: &str, site: &str| -> Labels {
            BTreeMap::from([
                ("severity".to_string(), severity.to_string()),
                ("site".to_string(), site.to_string()),
            ])
        };
        assert_eq!(
            Dispatcher::receivers(&r, &labels("critical", "s1")),
            vec!["webhook", "sms", "site-1-team"],
            "every continuing branch, up to the first that stops"
        );
        assert_eq!(
            Dispatcher::receivers(&r, &labels("critical", "s2")),
            vec!["webhook", "sms", "never"]
        );
        assert_eq!(
            Dispatcher::receivers(&r, &labels("warning", "s2")),
            vec!["ops"],
            "the default when no branch matched"
        );
        // One notification per receiver, each in its own group.
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut d = Dispatcher::default();
        d.observe(&r, event("a", "s1", "firing", "critical"), t0);
        let due = d.due(&r, &[], t0 + chrono::Duration::seconds(30));
        let mut told: Vec<&str> = due.iter().map(|n| n.receiver.as_str()).collect();
        told.sort_unstable();
        assert_eq!(told, vec!["site-1-team", "sms", "webhook"]);
        assert_eq!(d.firing(), (1, 1), "one alert, however many receivers");
    }

    #[test]
    fn an_acknowledged_alert_is_not_repeated_but_its_resolution_is_told() {
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let s = |n: i64| t0 + chrono::Duration::seconds(n);
        let r = Route {
            routes: vec![],
            ..route()
        };
        let mut d = Dispatcher::default();
        d.observe(&r, event("a", "s1", "firing", "warning"), s(0));
        assert_eq!(d.due(&r, &[], s(30)).len(), 1);
        d.observe(&r, event("a", "s1", "acknowledged", "warning"), s(40));
        assert!(
            d.due(&r, &[], s(30 + 3600)).is_empty(),
            "no repeat once acknowledged"
        );
        d.observe(&r, event("a", "s1", "resolved", "warning"), s(4000));
        let n = d.due(&r, &[], s(4000 + 300));
        assert_eq!((n.len(), n[0].resolved.len()), (1, 1));
    }

    #[test]
    fn a_silence_mutes_matching_alerts_until_it_ends() {
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let s = |n: i64| t0 + chrono::Duration::seconds(n);
        let r = Route {
            routes: vec![],
            ..route()
        };
        let silence = Silence {
            id: "x".into(),
            matchers: BTreeMap::from([("site".into(), "s1".into())]),
            starts: s(0),
            ends: s(100),
            by: "ops".into(),
            comment: "maintenance".into(),
        };
        let mut d = Dispatcher::default();
        d.observe(&r, event("a", "s1", "firing", "warning"), s(0));
        let n = d.due(&r, std::slice::from_ref(&silence), s(30));
        assert_eq!(n.len(), 1);
        assert!(n[0].silenced, "recorded, not sent");
        // After the silence ends, the repeat is sent.
        let n = d.due(&r, &[silence], s(30 + 3600));
        assert_eq!((n[0].silenced, n[0].firing.len()), (false, 1));
    }
}
