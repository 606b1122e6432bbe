//! Result rows the pipelines write, with their Arrow schemas.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::arrow_rows::ts_field;

/// Energy one machine used in one minute, integrated from its power readings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineEnergyMinute {
    /// Site of the machine.
    pub site: String,
    /// The machine.
    pub machine: String,
    /// Start of the minute.
    pub minute: DateTime<Utc>,
    /// Energy in the minute, watt-hours.
    pub energy_wh: f64,
    /// Mean power over the covered part of the minute, watts.
    pub avg_power_w: f64,
    /// Peak reading in the minute, watts.
    pub max_power_w: f64,
    /// Readings that fell in the minute.
    pub samples: i64,
    /// Seconds of the minute covered by intervals within the gap rule.
    pub covered_s: f64,
    /// `covered_s / 60`: 1.0 is a complete minute.
    pub quality: f64,
    /// `counter` when a cumulative kWh counter was differenced, else `power`.
    pub method: String,
    /// The device kind that measured it (meter, pdu, firmware, estimate).
    pub source: String,
    /// UTC date of the minute (partition).
    pub date: NaiveDate,
}

impl MachineEnergyMinute {
    /// Its table's schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("site", DataType::Utf8, false),
            Field::new("machine", DataType::Utf8, false),
            ts_field("minute"),
            Field::new("energy_wh", DataType::Float64, false),
            Field::new("avg_power_w", DataType::Float64, false),
            Field::new("max_power_w", DataType::Float64, false),
            Field::new("samples", DataType::Int64, false),
            Field::new("covered_s", DataType::Float64, false),
            Field::new("quality", DataType::Float64, false),
            Field::new("method", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("date", DataType::Date32, false),
        ]))
    }
}

/// Energy one site used in one minute: the sum over its machines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteEnergyMinute {
    /// The site.
    pub site: String,
    /// Start of the minute.
    pub minute: DateTime<Utc>,
    /// Energy in the minute, watt-hours.
    pub energy_wh: f64,
    /// Mean site power, watts (energy over the minute).
    pub avg_power_w: f64,
    /// Machines that reported in the minute.
    pub machines: i64,
    /// Mean of the machines' quality.
    pub quality: f64,
    /// UTC date of the minute (partition).
    pub date: NaiveDate,
}

impl SiteEnergyMinute {
    /// Its table's schema.
    pub fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("site", DataType::Utf8, false),
            ts_field("minute"),
            Field::new("energy_wh", DataType::Float64, false),
            Field::new("avg_power_w", DataType::Float64, false),
            Field::new("machines", DataType::Int64, false),
            Field::new("quality", DataType::Float64, false),
            Field::new("date", DataType::Date32, false),
        ]))
    }
}
