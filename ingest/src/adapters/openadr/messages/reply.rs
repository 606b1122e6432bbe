//! The VTN's replies the VEN acts on, read into plain values with every field checked:
//! ids bounded, times and durations parsed, units and scales known, or a clear error.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::super::xml::{self, Element};
use super::{MAX_ID_BYTES, parse_duration};
use adit_devices::DeviceError;

/// What a VTN's reply asks of the VEN.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `oadrCreatedPartyRegistration`: the ids to use, and how often to poll.
    Registered {
        /// This VEN's id at the VTN.
        ven_id: String,
        /// The registration's id.
        registration_id: String,
        /// `oadrRequestedOadrPollFreq`.
        poll_every: Option<Duration>,
    },
    /// `oadrDistributeEvent`: every event the VTN holds for this VEN now.
    Events {
        /// Its request id (echoed in the opt responses).
        request_id: String,
        /// The events.
        events: Vec<OadrEvent>,
    },
    /// `oadrRegisteredReport` or `oadrCreateReport`: reports the VTN wants.
    ReportRequests {
        /// Its request id.
        request_id: String,
        /// Each request.
        requests: Vec<ReportRequest>,
    },
    /// `oadrRegisterReport` from the VTN: its own metadata.
    VtnReports {
        /// Its request id.
        request_id: String,
    },
    /// `oadrRequestReregistration` or `oadrCancelPartyRegistration`: register again.
    Reregister,
    /// `oadrResponse`, `oadrUpdatedReport`, an empty body: nothing to do.
    Ok,
    /// A message this VEN does not act on, by name.
    Other(String),
}

/// One event as the VTN sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct OadrEvent {
    /// `eventID`.
    pub id: String,
    /// `modificationNumber`.
    pub modification: u32,
    /// `eventStatus`: `far`, `near`, `active`, `completed`, `cancelled`, `none`.
    pub status: String,
    /// A test event: answered, never acted on.
    pub test: bool,
    /// The active period's start.
    pub start: DateTime<Utc>,
    /// The active period's length.
    pub duration: Duration,
    /// `x-eiRampUp`: how long before the start the load should begin to move.
    pub ramp_up: Option<Duration>,
    /// `tolerance/startafter`: the randomization window.
    pub start_after: Option<Duration>,
    /// Whether an opt response is expected (`always`).
    pub response_required: bool,
    /// Its signals.
    pub signals: Vec<Signal>,
}

/// One event signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// `signalName`: `SIMPLE`, `LOAD_DISPATCH`, `LOAD_CONTROL`, …
    pub name: String,
    /// `signalType`: `level`, `setpoint`, `delta`, `x-loadControlCapacity`, …
    pub kind: String,
    /// How many kW one unit of the payload is (from `itemUnits` and `siScaleCode`); `None`
    /// without an item base.
    pub kw_per_unit: Option<f64>,
    /// Its intervals, each with its own start.
    pub intervals: Vec<Interval>,
}

/// One interval of a signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Its start.
    pub start: DateTime<Utc>,
    /// Its length.
    pub duration: Duration,
    /// The payload.
    pub value: f64,
}

impl Interval {
    /// Its end.
    pub fn end(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::from_std(self.duration).unwrap_or_default()
    }
}

/// One report the VTN asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRequest {
    /// `reportRequestID`.
    pub id: String,
    /// `reportSpecifierID`: which of the VEN's reports.
    pub specifier: String,
    /// How often to sample.
    pub granularity: Duration,
    /// How often to send what was sampled.
    pub report_back: Duration,
    /// Its data points (`rID`s).
    pub points: Vec<String>,
}

/// Reads a VTN's reply.
pub fn parse_reply(body: &[u8]) -> Result<Reply, DeviceError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Reply::Ok);
    }
    let root = xml::parse(body)?;
    let garbage = |why: String| DeviceError::garbage(why, body);
    let message = root
        .child("oadrSignedObject")
        .and_then(|s| s.children.first())
        .ok_or_else(|| garbage("not an oadrPayload with a signed object".into()))?;
    if let Some(code) = message.text_at(&["eiResponse", "responseCode"])
        && !code.starts_with('2')
    {
        let said = message
            .text_at(&["eiResponse", "responseDescription"])
            .unwrap_or("");
        return Err(garbage(format!(
            "the VTN refused it: {} {code} {said}",
            message.name
        )));
    }
    let request_id = || {
        message
            .find("requestID")
            .map(|r| r.text.clone())
            .unwrap_or_default()
    };
    Ok(match message.name.as_str() {
        "oadrCreatedPartyRegistration" => Reply::Registered {
            ven_id: id(message.text_at(&["venID"]), "venID").map_err(garbage)?,
            registration_id: id(message.text_at(&["registrationID"]), "registrationID")
                .map_err(garbage)?,
            poll_every: message
                .find("oadrRequestedOadrPollFreq")
                .and_then(|f| f.find("duration"))
                .map(|d| parse_duration(&d.text))
                .transpose()
                .map_err(garbage)?,
        },
        "oadrDistributeEvent" => Reply::Events {
            request_id: request_id(),
            events: message
                .children_named("oadrEvent")
                .map(event)
                .collect::<Result<_, _>>()
                .map_err(garbage)?,
        },
        "oadrRegisteredReport" | "oadrCreateReport" => Reply::ReportRequests {
            request_id: request_id(),
            requests: message
                .children_named("oadrReportRequest")
                .map(report_request)
                .collect::<Result<_, _>>()
                .map_err(garbage)?,
        },
        "oadrRegisterReport" => Reply::VtnReports {
            request_id: request_id(),
        },
        "oadrRequestReregistration" | "oadrCancelPartyRegistration" => Reply::Reregister,
        "oadrResponse" | "oadrUpdatedReport" | "oadrCanceledReport" => Reply::Ok,
        other => Reply::Other(other.to_string()),
    })
}

/// An id from the VTN: present, at most [`MAX_ID_BYTES`], printable.
fn id(text: Option<&str>, what: &str) -> Result<String, String> {
    let text = text.ok_or_else(|| format!("no {what}"))?;
    if text.is_empty() || text.len() > MAX_ID_BYTES || text.chars().any(char::is_control) {
        return Err(format!(
            "{what} {:?} is empty, longer than {MAX_ID_BYTES} bytes or holds control characters",
            adit_egress::excerpt(text.as_bytes(), 40)
        ));
    }
    Ok(text.to_string())
}

fn time(e: Option<&Element>, what: &str) -> Result<DateTime<Utc>, String> {
    let text = e
        .and_then(|e| e.find("date-time"))
        .map(|t| t.text.as_str())
        .ok_or_else(|| format!("no {what}"))?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{what} {text:?}: {e}"))
}

fn duration_in(e: Option<&Element>) -> Result<Option<Duration>, String> {
    e.and_then(|e| e.find("duration").or_else(|| e.find("startafter")))
        .map(|d| parse_duration(&d.text))
        .transpose()
}

fn event(e: &Element) -> Result<OadrEvent, String> {
    let ei = e.child("eiEvent").ok_or("an oadrEvent without eiEvent")?;
    let descriptor = ei.child("eventDescriptor").ok_or("no eventDescriptor")?;
    let event_id = id(descriptor.text_at(&["eventID"]), "eventID")?;
    let modification = descriptor
        .text_at(&["modificationNumber"])
        .ok_or("no modificationNumber")?
        .parse()
        .map_err(|_| format!("event {event_id}: modificationNumber is not a number"))?;
    let props = ei
        .child("eiActivePeriod")
        .and_then(|p| p.child("properties"))
        .ok_or_else(|| format!("event {event_id}: no active period"))?;
    let start = time(props.child("dtstart"), "dtstart")?;
    let duration = duration_in(props.child("duration"))?
        .ok_or_else(|| format!("event {event_id}: no duration"))?;
    let signals = ei
        .child("eiEventSignals")
        .map(|s| {
            s.children_named("eiEventSignal")
                .map(|s| signal(s, start))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    Ok(OadrEvent {
        modification,
        status: descriptor
            .text_at(&["eventStatus"])
            .unwrap_or("none")
            .to_ascii_lowercase(),
        test: descriptor.text_at(&["testEvent"]) == Some("true"),
        start,
        duration,
        ramp_up: duration_in(props.child("x-eiRampUp"))?,
        start_after: duration_in(props.child("tolerance"))?,
        response_required: e.text_at(&["oadrResponseRequired"]) != Some("never"),
        signals,
        id: event_id,
    })
}

fn signal(s: &Element, event_start: DateTime<Utc>) -> Result<Signal, String> {
    let name = s.text_at(&["signalName"]).unwrap_or("").to_string();
    let kind = s.text_at(&["signalType"]).unwrap_or("").to_string();
    let mut next = event_start;
    let mut intervals = Vec::new();
    for i in s
        .child("intervals")
        .map(|i| i.children_named("interval").collect::<Vec<_>>())
        .unwrap_or_default()
    {
        let start = match i.child("dtstart") {
            Some(d) => time(Some(d), "an interval's dtstart")?,
            None => next,
        };
        let duration = duration_in(i.child("duration"))?.unwrap_or_default();
        let value = i
            .find("value")
            .ok_or("an interval without a payload value")?
            .text
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or("an interval's value is not a number")?;
        let interval = Interval {
            start,
            duration,
            value,
        };
        next = interval.end();
        intervals.push(interval);
    }
    let kw_per_unit = s
        .children
        .iter()
        .find(|c| c.child("itemUnits").is_some())
        .map(|item| {
            let units = item.text_at(&["itemUnits"]).unwrap_or("W");
            let scale = item.text_at(&["siScaleCode"]).unwrap_or("none");
            kw_per(units, scale)
        })
        .transpose()?;
    Ok(Signal {
        name,
        kind,
        kw_per_unit,
        intervals,
    })
}

/// kW in one unit of `units` at `scale` (only real power is understood).
fn kw_per(units: &str, scale: &str) -> Result<f64, String> {
    if units != "W" {
        return Err(format!("item units {units:?}, not W"));
    }
    let factor = match scale {
        "p" => 1e-12,
        "n" => 1e-9,
        "micro" => 1e-6,
        "m" => 1e-3,
        "c" => 1e-2,
        "d" => 1e-1,
        "none" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        other => return Err(format!("unknown siScaleCode {other:?}")),
    };
    Ok(factor / 1000.0)
}

fn report_request(r: &Element) -> Result<ReportRequest, String> {
    let specifier = r.child("reportSpecifier").ok_or("no reportSpecifier")?;
    let points = specifier
        .children_named("specifierPayload")
        .filter_map(|p| p.text_at(&["rID"]).map(str::to_string))
        .collect();
    let floor = Duration::from_secs(1);
    Ok(ReportRequest {
        id: id(r.text_at(&["reportRequestID"]), "reportRequestID")?,
        specifier: id(
            specifier.text_at(&["reportSpecifierID"]),
            "reportSpecifierID",
        )?,
        granularity: duration_in(specifier.child("granularity"))?
            .unwrap_or(floor)
            .max(floor),
        report_back: duration_in(specifier.child("reportBackDuration"))?
            .unwrap_or(floor)
            .max(floor),
        points,
    })
}
