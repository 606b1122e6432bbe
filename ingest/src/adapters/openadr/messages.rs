//! OpenADR 2.0b's messages as a VEN speaks them over simple HTTP in pull mode: the payloads it
//! sends (written here by quick-xml's `Writer`, which escapes every value, with elements in the
//! order the 2.0b schema requires) and the VTN's replies it acts on (read here into plain
//! values, every field checked). Pure: no I/O.

use std::io;
use std::time::Duration;

use chrono::{DateTime, Utc};
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

use super::xml::{self, Element};
use adit_devices::DeviceError;

/// The namespaces every payload declares once, on its root.
const NAMESPACES: [(&str, &str); 8] = [
    ("xmlns:oadr", "http://openadr.org/oadr-2.0b/2012/07"),
    (
        "xmlns:ei",
        "http://docs.oasis-open.org/ns/energyinterop/201110",
    ),
    (
        "xmlns:pyld",
        "http://docs.oasis-open.org/ns/energyinterop/201110/payloads",
    ),
    ("xmlns:emix", "http://docs.oasis-open.org/ns/emix/2011/06"),
    ("xmlns:xcal", "urn:ietf:params:xml:ns:icalendar-2.0"),
    ("xmlns:strm", "urn:ietf:params:xml:ns:icalendar-2.0:stream"),
    (
        "xmlns:power",
        "http://docs.oasis-open.org/ns/emix/2011/06/power",
    ),
    (
        "xmlns:scale",
        "http://docs.oasis-open.org/ns/emix/2011/06/siscale",
    ),
];

/// The longest id (event, request, VEN) taken from a VTN.
pub const MAX_ID_BYTES: usize = 128;
/// The report's one data point: the site's real power.
pub const POWER_RID: &str = "site_power";
/// The id the VEN's metadata report is known by.
pub const REPORT_SPECIFIER: &str = "adit_site_power";

/// The service (last path segment under the VTN's URL) each message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Registration.
    RegisterParty,
    /// Events and opt responses.
    Event,
    /// Reports.
    Report,
    /// The poll.
    Poll,
}

impl Service {
    /// Its path segment.
    pub fn path(self) -> &'static str {
        match self {
            Self::RegisterParty => "EiRegisterParty",
            Self::Event => "EiEvent",
            Self::Report => "EiReport",
            Self::Poll => "OadrPoll",
        }
    }
}

/// A payload being written.
type Xml = Writer<Vec<u8>>;

/// The payload of one message `oadr:{name}`: its content, written by `body`, inside the
/// signed object of an `oadrPayload` that declares [`NAMESPACES`].
fn message(name: &str, body: impl FnOnce(&mut Xml) -> io::Result<()>) -> String {
    let mut w = Writer::new(Vec::new());
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)))
        .and_then(|()| {
            w.create_element("oadr:oadrPayload")
                .with_attributes(NAMESPACES)
                .write_inner_content(|w| {
                    w.create_element("oadr:oadrSignedObject")
                        .with_attribute(("oadr:Id", "oadrSignedObject"))
                        .write_inner_content(|w| {
                            w.create_element(format!("oadr:{name}"))
                                .with_attribute(("ei:schemaVersion", "2.0b"))
                                .write_inner_content(body)
                                .map(drop)
                        })
                        .map(drop)
                })
        })
        .expect("writing to a Vec does not fail");
    String::from_utf8(w.into_inner()).expect("written from UTF-8 text only")
}

/// `<tag>…</tag>`, its content written by `inner`.
fn el(w: &mut Xml, tag: &str, inner: impl FnOnce(&mut Xml) -> io::Result<()>) -> io::Result<()> {
    w.create_element(tag).write_inner_content(inner).map(drop)
}

/// `<tag>text</tag>`, the text escaped.
fn leaf(w: &mut Xml, tag: &str, text: &str) -> io::Result<()> {
    w.create_element(tag)
        .write_text_content(BytesText::new(text))
        .map(drop)
}

/// A response's code, description and request id (in an `eiResponse` or an `eventResponse`).
fn ok(w: &mut Xml, request_id: &str) -> io::Result<()> {
    leaf(w, "ei:responseCode", "200")?;
    leaf(w, "ei:responseDescription", "OK")?;
    leaf(w, "pyld:requestID", request_id)
}

/// `oadrCreatePartyRegistration`: this VEN, by name (and by the ids it was given before).
pub fn create_party_registration(
    request_id: &str,
    ven_name: &str,
    ven_id: Option<&str>,
    registration_id: Option<&str>,
) -> String {
    message("oadrCreatePartyRegistration", |w| {
        leaf(w, "pyld:requestID", request_id)?;
        if let Some(id) = registration_id {
            leaf(w, "ei:registrationID", id)?;
        }
        if let Some(id) = ven_id {
            leaf(w, "ei:venID", id)?;
        }
        leaf(w, "oadr:oadrProfileName", "2.0b")?;
        leaf(w, "oadr:oadrTransportName", "simpleHttp")?;
        leaf(w, "oadr:oadrReportOnly", "false")?;
        leaf(w, "oadr:oadrXmlSignature", "false")?;
        leaf(w, "oadr:oadrVenName", ven_name)?;
        leaf(w, "oadr:oadrHttpPullModel", "true")
    })
}

/// `oadrRequestEvent`: every event the VTN holds for this VEN.
pub fn request_event(request_id: &str, ven_id: &str) -> String {
    message("oadrRequestEvent", |w| {
        el(w, "pyld:eiRequestEvent", |w| {
            leaf(w, "pyld:requestID", request_id)?;
            leaf(w, "ei:venID", ven_id)
        })
    })
}

/// `oadrPoll`.
pub fn poll(ven_id: &str) -> String {
    message("oadrPoll", |w| leaf(w, "ei:venID", ven_id))
}

/// One event's answer in an `oadrCreatedEvent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptResponse {
    /// The `oadrDistributeEvent`'s request id.
    pub request_id: String,
    /// The event.
    pub event_id: String,
    /// The modification answered.
    pub modification: u32,
    /// Opted in (else out).
    pub opt_in: bool,
}

/// `oadrCreatedEvent`: opt in or out of each event.
pub fn created_event(ven_id: &str, responses: &[OptResponse]) -> String {
    message("oadrCreatedEvent", |w| {
        el(w, "pyld:eiCreatedEvent", |w| {
            el(w, "ei:eiResponse", |w| ok(w, ""))?;
            el(w, "ei:eventResponses", |w| {
                responses.iter().try_for_each(|r| {
                    el(w, "ei:eventResponse", |w| {
                        ok(w, &r.request_id)?;
                        el(w, "ei:qualifiedEventID", |w| {
                            leaf(w, "ei:eventID", &r.event_id)?;
                            leaf(w, "ei:modificationNumber", &r.modification.to_string())
                        })?;
                        leaf(w, "ei:optType", if r.opt_in { "optIn" } else { "optOut" })
                    })
                })
            })?;
            leaf(w, "ei:venID", ven_id)
        })
    })
}

/// `oadrRegisterReport`: the VEN's metadata: one telemetry report of the site's real power
/// in kW, sampled every `min`..`max`.
pub fn register_report(
    request_id: &str,
    ven_id: &str,
    site: &str,
    min: Duration,
    max: Duration,
    now: DateTime<Utc>,
) -> String {
    message("oadrRegisterReport", |w| {
        leaf(w, "pyld:requestID", request_id)?;
        el(w, "oadr:oadrReport", |w| {
            el(w, "xcal:duration", |w| leaf(w, "xcal:duration", "PT0S"))?;
            el(w, "oadr:oadrReportDescription", |w| {
                leaf(w, "ei:rID", POWER_RID)?;
                el(w, "ei:reportDataSource", |w| leaf(w, "ei:resourceID", site))?;
                leaf(w, "ei:reportType", "usage")?;
                el(w, "power:powerReal", |w| {
                    leaf(w, "power:itemDescription", "RealPower")?;
                    leaf(w, "power:itemUnits", "W")?;
                    leaf(w, "scale:siScaleCode", "k")?;
                    el(w, "power:powerAttributes", |w| {
                        leaf(w, "power:hertz", "50")?;
                        leaf(w, "power:voltage", "230")?;
                        leaf(w, "power:ac", "true")
                    })
                })?;
                leaf(w, "ei:readingType", "Direct Read")?;
                el(w, "oadr:oadrSamplingRate", |w| {
                    leaf(w, "oadr:oadrMinPeriod", &iso_duration(min))?;
                    leaf(w, "oadr:oadrMaxPeriod", &iso_duration(max))?;
                    leaf(w, "oadr:oadrOnChange", "false")
                })
            })?;
            leaf(w, "ei:reportRequestID", "0")?;
            leaf(w, "ei:reportSpecifierID", REPORT_SPECIFIER)?;
            leaf(w, "ei:reportName", "METADATA_TELEMETRY_USAGE")?;
            leaf(w, "ei:createdDateTime", &datetime(now))
        })?;
        leaf(w, "ei:venID", ven_id)
    })
}

/// `oadrRegisteredReport`: the VTN's own metadata taken, none of it requested.
pub fn registered_report(request_id: &str, ven_id: &str) -> String {
    message("oadrRegisteredReport", |w| {
        el(w, "ei:eiResponse", |w| ok(w, request_id))?;
        leaf(w, "ei:venID", ven_id)
    })
}

/// `oadrCreatedReport`: the report requests this VEN now serves.
pub fn created_report(request_id: &str, ven_id: &str, pending: &[String]) -> String {
    message("oadrCreatedReport", |w| {
        el(w, "ei:eiResponse", |w| ok(w, request_id))?;
        el(w, "oadr:oadrPendingReports", |w| {
            pending
                .iter()
                .try_for_each(|id| leaf(w, "ei:reportRequestID", id))
        })?;
        leaf(w, "ei:venID", ven_id)
    })
}

/// `oadrUpdateReport`: the site's power, kW, at each sample time, for one request.
pub fn update_report(
    request_id: &str,
    ven_id: &str,
    report_request_id: &str,
    samples: &[(DateTime<Utc>, f64)],
    now: DateTime<Utc>,
) -> String {
    let start = samples.first().map(|s| s.0).unwrap_or(now);
    let dtstart = |w: &mut Xml, at| {
        el(w, "xcal:dtstart", |w| {
            leaf(w, "xcal:date-time", &datetime(at))
        })
    };
    message("oadrUpdateReport", |w| {
        leaf(w, "pyld:requestID", request_id)?;
        el(w, "oadr:oadrReport", |w| {
            dtstart(w, start)?;
            el(w, "strm:intervals", |w| {
                samples.iter().try_for_each(|(at, kw)| {
                    el(w, "ei:interval", |w| {
                        dtstart(w, *at)?;
                        el(w, "oadr:oadrReportPayload", |w| {
                            leaf(w, "ei:rID", POWER_RID)?;
                            el(w, "ei:payloadFloat", |w| {
                                leaf(w, "ei:value", &kw.to_string())
                            })?;
                            leaf(w, "oadr:oadrDataQuality", "Quality Good - Non Specific")
                        })
                    })
                })
            })?;
            let report_id = format!("{report_request_id}-{}", now.timestamp_millis());
            leaf(w, "ei:eiReportID", &report_id)?;
            leaf(w, "ei:reportRequestID", report_request_id)?;
            leaf(w, "ei:reportSpecifierID", REPORT_SPECIFIER)?;
            leaf(w, "ei:reportName", "TELEMETRY_USAGE")?;
            leaf(w, "ei:createdDateTime", &datetime(now))
        })?;
        leaf(w, "ei:venID", ven_id)
    })
}

/// A time as 2.0b writes it: UTC, `Z`.
pub fn datetime(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A duration as ISO 8601 (`PT90S`).
pub fn iso_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("PT{}S", ms / 1000)
    } else {
        format!("PT{}.{:03}S", ms / 1000, ms % 1000)
    }
}

/// Reads an ISO 8601 duration (`PT5M`, `P1DT2H`, `PT0.5S`); negative durations, years and
/// months (whose length depends on the calendar) are refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("not an ISO 8601 duration: {text:?}");
    let rest = text.trim().strip_prefix('P').ok_or_else(bad)?;
    let (date, time) = rest.split_once('T').unwrap_or((rest, ""));
    if date.is_empty() && time.is_empty() {
        return Err(bad());
    }
    let mut seconds = 0f64;
    for (part, units) in [
        (date, &[('W', 604_800.0), ('D', 86_400.0)][..]),
        (time, &[('H', 3_600.0), ('M', 60.0), ('S', 1.0)][..]),
    ] {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            let factor = units
                .iter()
                .find(|(u, _)| *u == c)
                .map(|(_, f)| *f)
                .ok_or_else(bad)?;
            let n: f64 = number.parse().map_err(|_| bad())?;
            seconds += n * factor;
            number.clear();
        }
        if !number.is_empty() {
            return Err(bad());
        }
    }
    if !seconds.is_finite() || seconds > 366.0 * 86_400.0 {
        return Err(format!("duration {text:?} is longer than a year"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations_read_and_write() {
        for (text, secs) in [
            ("PT5M", 300.0),
            ("P1DT2H", 93_600.0),
            ("PT0.5S", 0.5),
            ("PT0S", 0.0),
            ("P1W", 604_800.0),
        ] {
            assert_eq!(parse_duration(text), Ok(Duration::from_secs_f64(secs)));
        }
        for bad in [
            "",
            "P",
            "5M",
            "PT5",
            "P1Y",
            "-PT5M",
            "PTxS",
            "P9999999999DT",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(iso_duration(Duration::from_millis(1500)), "PT1.500S");
        assert_eq!(
            parse_duration(&iso_duration(Duration::from_secs(90))),
            Ok(Duration::from_secs(90))
        );
    }

    /// Each builder's payload for fixed inputs, text that needs escaping among them.
    fn fixed_payloads() -> Vec<String> {
        let t0 = DateTime::parse_from_rfc3339("2026-11-24T10:00:00.250Z")
            .unwrap()
            .to_utc();
        let s = chrono::Duration::seconds;
        let opt = |request_id: &str, event_id: &str, modification, opt_in| OptResponse {
            request_id: request_id.into(),
            event_id: event_id.into(),
            modification,
            opt_in,
        };
        let opts = [
            opt("dist-1", "ev-1", 2, true),
            opt("dist-1", "ev&2", 0, false),
        ];
        let samples = [(t0, 12.5), (t0 + s(10), 0.0), (t0 + s(20), -3.25)];
        let (min, max) = (Duration::from_secs(10), Duration::from_millis(1500));
        vec![
            create_party_registration("reg-1", "site <a> & \"b\" 'c'", None, None),
            create_party_registration("reg-2", "site-a", Some("ven-7"), Some("r-9")),
            request_event("req-3", "ven-7"),
            poll("ven-7"),
            created_event("ven-7", &[]),
            created_event("ven-7", &opts),
            register_report("req-4", "ven-7", "site-a", min, max, t0),
            registered_report("req-5", "ven-7"),
            created_report("req-6", "ven-7", &[]),
            created_report("req-6", "ven-7", &["rr-1".into(), "rr-2".into()]),
            update_report("req-7", "ven-7", "rr-1", &[], t0),
            update_report("req-7", "ven-7", "rr-1", &samples, t0 + s(25)),
        ]
    }

    #[test]
    fn payloads_are_byte_for_byte_what_the_format_strings_wrote() {
        let golden: Vec<&str> = include_str!("messages_golden.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect();
        let written = fixed_payloads();
        assert_eq!(written.len(), golden.len());
        for (i, (written, golden)) in written.iter().zip(golden).enumerate() {
            assert_eq!(written, golden, "payload {i} of fixed_payloads()");
        }
    }

    /// Text that is markup if written raw, and that text escaped.
    const HOSTILE: &str = "a<b>&amp;\"c\"'d']]></ei:venID>é";
    const ESCAPED: &str = "a&lt;b&gt;&amp;amp;&quot;c&quot;&apos;d&apos;]]&gt;&lt;/ei:venID&gt;é";

    /// Every element's text in `e`, depth first.
    fn texts(e: &Element) -> Vec<&str> {
        let below = e.children.iter().flat_map(texts);
        std::iter::once(e.text.as_str()).chain(below).collect()
    }

    /// Issue 57: every text a caller gives is escaped by the writer and reads back the same.
    #[test]
    fn hostile_text_in_every_field_is_escaped_and_reads_back_the_same() {
        let h = HOSTILE;
        let (at, d) = (DateTime::<Utc>::UNIX_EPOCH, Duration::from_secs(1));
        let opt = OptResponse {
            request_id: h.into(),
            event_id: h.into(),
            modification: 1,
            opt_in: true,
        };
        // Each payload with every text field given `h`, and how many fields that is.
        let cases = [
            (create_party_registration(h, h, Some(h), Some(h)), 4),
            (request_event(h, h), 2),
            (poll(h), 1),
            (created_event(h, &[opt]), 3),
            (register_report(h, h, h, d, d, at), 3),
            (registered_report(h, h), 2),
            (created_report(h, h, &[h.into()]), 3),
            (update_report(h, h, h, &[(at, 1.0)], at), 4),
        ];
        let report_id = format!("{h}-0");
        for (payload, fields) in cases {
            let root = xml::parse(payload.as_bytes()).expect("well-formed XML");
            let read = texts(&root);
            let back = read.iter().filter(|t| [h, &report_id].contains(t));
            assert_eq!(back.count(), fields, "{payload}");
            assert_eq!(payload.matches(ESCAPED).count(), fields, "{payload}");
            assert!(
                !payload.contains("<b>") && !payload.contains("]]>"),
                "{payload}"
            );
        }
    }

    const DISTRIBUTE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<oadr:oadrPayload xmlns:oadr="http://openadr.org/oadr-2.0b/2012/07">
<oadr:oadrSignedObject xmlns:oadr="http://openadr.org/oadr-2.0b/2012/07" oadr:Id="oadrSignedObject">
  <oadr:oadrDistributeEvent ei:schemaVersion="2.0b" xmlns:ei="http://docs.oasis-open.org/ns/energyinterop/201110">
    <requestID xmlns="http://docs.oasis-open.org/ns/energyinterop/201110/payloads">req-9</requestID>
    <ei:vtnID>vtn</ei:vtnID>
    <oadr:oadrEvent><ei:eiEvent>
      <ei:eventDescriptor><ei:eventID>ev-1</ei:eventID><ei:modificationNumber>2</ei:modificationNumber>
        <ei:eventStatus>far</ei:eventStatus></ei:eventDescriptor>
      <ei:eiActivePeriod><properties xmlns="urn:ietf:params:xml:ns:icalendar-2.0">
        <dtstart><date-time>2026-11-24T10:05:00Z</date-time></dtstart>
        <duration><duration>PT10M</duration></duration>
        <ei:x-eiRampUp><duration>PT2M</duration></ei:x-eiRampUp>
      </properties><components xmlns="urn:ietf:params:xml:ns:icalendar-2.0"/></ei:eiActivePeriod>
      <ei:eiEventSignals><ei:eiEventSignal>
        <strm:intervals xmlns:strm="urn:ietf:params:xml:ns:icalendar-2.0:stream" xmlns:xcal="urn:ietf:params:xml:ns:icalendar-2.0">
          <ei:interval><xcal:duration><xcal:duration>PT5M</xcal:duration></xcal:duration>
            <ei:signalPayload><ei:payloadFloat><ei:value>15.5</ei:value></ei:payloadFloat></ei:signalPayload></ei:interval>
          <ei:interval><xcal:duration><xcal:duration>PT5M</xcal:duration></xcal:duration>
            <ei:signalPayload><ei:payloadFloat><ei:value>8</ei:value></ei:payloadFloat></ei:signalPayload></ei:interval>
        </strm:intervals>
        <ei:signalName>LOAD_DISPATCH</ei:signalName><ei:signalType>setpoint</ei:signalType><ei:signalID>s</ei:signalID>
        <power:powerReal xmlns:power="http://docs.oasis-open.org/ns/emix/2011/06/power" xmlns:scale="http://docs.oasis-open.org/ns/emix/2011/06/siscale">
          <power:itemDescription>RealPower</power:itemDescription><power:itemUnits>W</power:itemUnits><scale:siScaleCode>k</scale:siScaleCode>
        </power:powerReal>
      </ei:eiEventSignal></ei:eiEventSignals>
    </ei:eiEvent><oadr:oadrResponseRequired>always</oadr:oadrResponseRequired></oadr:oadrEvent>
  </oadr:oadrDistributeEvent>
</oadr:oadrSignedObject></oadr:oadrPayload>"#;

    #[test]
    fn a_distributed_event_is_read_with_its_intervals_one_after_another() {
        let Reply::Events { request_id, events } = parse_reply(DISTRIBUTE.as_bytes()).unwrap()
        else {
            panic!("not events");
        };
        assert_eq!(request_id, "req-9");
        let e = &events[0];
        assert_eq!((e.id.as_str(), e.modification), ("ev-1", 2));
        assert_eq!(e.status, "far");
        assert_eq!(e.ramp_up, Some(Duration::from_secs(120)));
        assert_eq!(e.duration, Duration::from_secs(600));
        let s = &e.signals[0];
        assert_eq!(
            (s.name.as_str(), s.kind.as_str()),
            ("LOAD_DISPATCH", "setpoint")
        );
        assert_eq!(s.kw_per_unit, Some(1.0));
        assert_eq!(s.intervals.len(), 2);
        assert_eq!(s.intervals[0].start, e.start);
        assert_eq!(s.intervals[1].start, s.intervals[0].end());
        assert_eq!(s.intervals[1].value, 8.0);
    }

    #[test]
    fn a_refusal_or_a_broken_event_is_an_error_that_says_why() {
        let refused = DISTRIBUTE.replace(
            "<requestID xmlns=\"http://docs.oasis-open.org/ns/energyinterop/201110/payloads\">req-9</requestID>",
            "<ei:eiResponse><ei:responseCode>452</ei:responseCode><ei:responseDescription>bad id</ei:responseDescription></ei:eiResponse>",
        );
        let e = parse_reply(refused.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("452") && e.contains("bad id"), "{e}");
        for (from, to) in [
            ("<ei:value>8</ei:value>", "<ei:value>NaN</ei:value>"),
            ("PT10M", "PT10"),
            ("2026-11-24T10:05:00Z", "yesterday"),
            ("<ei:eventID>ev-1</ei:eventID>", "<ei:eventID></ei:eventID>"),
        ] {
            let broken = DISTRIBUTE.replace(from, to);
            assert!(parse_reply(broken.as_bytes()).is_err(), "{to}");
        }
        assert!(matches!(parse_reply(b"  "), Ok(Reply::Ok)));
    }
}
