//! OpenADR 2.0b's messages as a VEN speaks them over simple HTTP in pull mode: the payloads it
//! sends (written here by quick-xml's `Writer`, which escapes every value, with elements in the
//! order the 2.0b schema requires) and the VTN's replies it acts on (read here into plain
//! values, every field checked: `messages/reply.rs`). Pure: no I/O.

use std::io;
use std::time::Duration;

use chrono::{DateTime, Utc};
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

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

mod reply;
pub use reply::{Interval, OadrEvent, Reply, ReportRequest, Signal, parse_reply};

#[cfg(test)]
mod tests;
