//! The Flight SQL calls: statements (planned for their schema, then streamed), prepared
//! statements with parameters, and the catalog calls clients make to list what there is
//! (`GetCatalogs`, `GetDbSchemas`, `GetTables`, `GetTableTypes`, `GetSqlInfo`). Every call is
//! authenticated first; every statement runs on the engine in a slot of the caller's role.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use adit_auth::Caller;
use adit_sql::{Planned, SqlError, StatementOptions};
use arrow::array::{Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use base64::Engine;
use datafusion::common::ParamValues;
use futures::{Stream, StreamExt, TryStreamExt, stream};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::handle::Handle;
use super::planned::{self, KEPT_FOR, PREPARED_FOR, PlannedStatements};
use super::{Flight, Peer};

/// The stream `DoGet` answers with.
type DoGetStream = <Service as FlightService>::DoGetStream;

/// The Flight SQL service over the engine.
pub(super) struct Service {
    flight: Arc<Flight>,
    /// What `GetSqlInfo` tells clients about the server.
    info: SqlInfoData,
    /// Statements planned for `GetFlightInfo`, waiting for their `DoGet`.
    planned: PlannedStatements,
}

impl Service {
    pub(super) fn new(flight: Arc<Flight>) -> Result<Self, FlightError> {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "adit");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
        info.append(SqlInfo::FlightSqlServerReadOnly, true);
        info.append(SqlInfo::FlightSqlServerSql, true);
        info.append(SqlInfo::FlightSqlServerSubstrait, false);
        info.append(SqlInfo::FlightSqlServerTransaction, 0_i32);
        info.append(SqlInfo::FlightSqlServerCancel, false);
        info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        Ok(Self {
            flight,
            info: info.build()?,
            planned: PlannedStatements::default(),
        })
    }

    /// Who makes `request`: its bearer token (none needed when auth is off); a failure counts
    /// towards the lockout of its address.
    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        self.identify(request, header).await
    }

    /// [`Service::caller`] for an `authorization` value.
    async fn identify<T>(
        &self,
        request: &Request<T>,
        authorization: Option<&str>,
    ) -> Result<Caller, Status> {
        let peer = request.extensions().get::<Peer>();
        let ip = peer.map(|p| p.addr.ip().to_canonical());
        let lockout = &self.flight.lockout;
        if let Some(ip) = ip
            && lockout.banned(ip, Instant::now()).is_some()
        {
            return Err(Status::permission_denied(
                "this address failed to authenticate too often and is banned for now",
            ));
        }
        match self.flight.tokens.identify(authorization) {
            Ok(caller) => {
                if let Some(peer) = peer {
                    peer.authenticated
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(caller)
            }
            Err(e) => {
                if let Some(ip) = ip {
                    let struck = lockout.fail(ip, Instant::now());
                    tracing::info!(client = %ip, error = %e, "Flight SQL authentication failed");
                    tokio::time::sleep(struck.delay).await;
                }
                Err(Status::unauthenticated(e.to_string()))
            }
        }
    }

    /// A statement slot of `caller`'s role.
    async fn slot(&self, caller: &Caller) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        self.flight
            .admission
            .admit(caller.role)
            .await
            .map_err(|e| Status::resource_exhausted(e.to_string()))
    }

    /// The schema of `sql`'s rows (planned, read-only checked, not run).
    async fn schema(&self, caller: &Caller, sql: &str) -> Result<SchemaRef, Status> {
        self.plan(caller, sql)
            .await
            .map(|planned| planned.description.schema)
    }

    /// `sql` planned and read-only checked, not run, in a statement slot of `caller`'s role
    /// (planning is work like running).
    async fn plan(&self, caller: &Caller, sql: &str) -> Result<Planned, Status> {
        let _slot = self.slot(caller).await?;
        self.flight
            .engine
            .plan(sql, StatementOptions::default())
            .await
            .map_err(|e| status(&e))
    }

    /// `sql` planned in a slot of `caller`'s role and kept for its `DoGet`: the flight's
    /// schema and the ticket that names the plan.
    async fn planned_info(
        &self,
        caller: &Caller,
        sql: String,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let planned = self.plan(caller, &sql).await?;
        let schema = planned.description.schema.clone();
        let id = self
            .planned
            .keep(caller, sql.clone(), planned, KEPT_FOR, Instant::now());
        kept_info(&schema, id, &sql, descriptor)
    }

    /// Runs `sql` with `params` in a slot of `caller`'s role and streams its batches.
    async fn run(
        &self,
        caller: &Caller,
        sql: &str,
        params: Option<ParamValues>,
    ) -> Result<Response<DoGetStream>, Status> {
        let slot = self.slot(caller).await?;
        let options = StatementOptions {
            params,
            ..StatementOptions::default()
        };
        let rows = self.flight.engine.query_stream_with(sql, options).await;
        stream_rows(rows, slot)
    }

    /// Runs a statement planned already in a slot of `caller`'s role and streams its batches.
    async fn run_planned(
        &self,
        caller: &Caller,
        planned: Planned,
    ) -> Result<Response<DoGetStream>, Status> {
        let slot = self.slot(caller).await?;
        let rows = self.flight.engine.run_planned(planned).await;
        stream_rows(rows, slot)
    }

    /// Rows of an internal catalog query, as (column → strings) per row.
    async fn strings(&self, sql: &str) -> Result<Vec<Vec<String>>, Status> {
        let result = self
            .flight
            .engine
            .query(sql)
            .await
            .map_err(|e| status(&e))?;
        let mut rows = Vec::new();
        for batch in &result.batches {
            let columns: Vec<&StringArray> = batch
                .columns()
                .iter()
                .filter_map(|c| c.as_any().downcast_ref::<StringArray>())
                .collect();
            for i in 0..batch.num_rows() {
                rows.push(
                    columns
                        .iter()
                        .map(|c| {
                            if c.is_null(i) {
                                String::new()
                            } else {
                                c.value(i).to_string()
                            }
                        })
                        .collect(),
                );
            }
        }
        Ok(rows)
    }
}

impl Service {
    /// The `FlightInfo` of a catalog call (`GetTables`…) for its authenticated caller.
    async fn listing(
        &self,
        request: Request<FlightDescriptor>,
        schema: &Schema,
        ticket: Vec<u8>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request).await?;
        info(schema, ticket, request.into_inner())
    }
}

/// A statement's rows as Flight data, holding its statement `slot` until the last batch.
fn stream_rows(
    rows: adit_sql::Result<adit_sql::engine::RowStream>,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Result<Response<DoGetStream>, Status> {
    let rows = rows.map_err(|e| status(&e))?;
    metrics::counter!("adit_query_flight_statements_total").increment(1);
    let schema = rows.schema.clone();
    let batches = stream::unfold((rows, slot), |(mut rows, slot)| async move {
        let batch = rows.next().await?;
        Some((
            batch.map_err(|e| FlightError::Tonic(Box::new(status(&e)))),
            (rows, slot),
        ))
    });
    Ok(encoded(schema, batches))
}

/// `batches` as Flight data with `schema` first.
fn encoded(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
) -> Response<DoGetStream> {
    let data = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches)
        .map_err(Status::from);
    Response::new(Box::pin(data))
}

/// One batch as Flight data.
fn one(batch: Result<RecordBatch, FlightError>) -> Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(|e| Status::internal(e.to_string()))?;
    Ok(encoded(batch.schema(), stream::iter([Ok(batch)])))
}

/// A `FlightInfo` for rows of `schema` fetched by running plan `id` of `sql`.
fn kept_info(
    schema: &Schema,
    id: u64,
    sql: &str,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let ticket = TicketStatementQuery {
        statement_handle: planned::ticket(id, sql).into(),
    };
    info(schema, ticket.as_any().encode_to_vec(), descriptor)
}

/// A `FlightInfo` for rows of `schema` fetched with `ticket`.
fn info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// The gRPC status for why the engine refused or stopped a statement.
fn status(e: &SqlError) -> Status {
    let message = e.to_string();
    match e {
        SqlError::Empty | SqlError::InvalidSql(_) => Status::invalid_argument(message),
        SqlError::ReadOnly(_) => Status::permission_denied(message),
        SqlError::Timeout { .. } => Status::deadline_exceeded(message),
        SqlError::TooComplex(_) | SqlError::MemoryLimit { .. } | SqlError::RowLimit { .. } => {
            Status::resource_exhausted(message)
        }
        _ => {
            tracing::warn!(error = %e, "a Flight SQL statement failed on our side");
            Status::internal(message)
        }
    }
}

/// A handle a client sent back, or why it is refused.
fn handle(bytes: &[u8]) -> Result<Handle, Status> {
    Handle::decode(bytes).map_err(Status::invalid_argument)
}

/// `name` quoted as an SQL identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The token in an `authorization: Basic …` value's password.
fn basic_password(value: &str) -> Option<String> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    // Padded or not: Go's clients (ADBC, Grafana) send it without padding.
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let decoded = lenient.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_string())
}

#[tonic::async_trait]
impl FlightSqlService for Service {
    type FlightService = Service;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // A user name and password: the password is the token, handed back as the bearer.
        let bearer = match presented.as_deref() {
            Some(value) => match basic_password(value) {
                Some(password) => format!("Bearer {password}"),
                None => value.to_string(),
            },
            None => String::new(),
        };
        self.identify(&request, Some(bearer.as_str()).filter(|b| !b.is_empty()))
            .await?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(stream::iter([Ok(reply)])));
        if !bearer.is_empty() {
            let value = MetadataValue::try_from(bearer.as_str())
                .map_err(|_| Status::invalid_argument("the token is not a header value"))?;
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(&request).await?;
        self.planned_info(&caller, query.query, request.into_inner())
            .await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let caller = self.caller(&request).await?;
        let text = String::from_utf8(ticket.statement_handle.to_vec())
            .map_err(|_| Status::invalid_argument("the statement is not UTF-8"))?;
        match self.planned.take(&caller, &text, Instant::now()) {
            (_, Some(planned)) => self.run_planned(&caller, planned).await,
            (sql, None) => self.run(&caller, &sql, None).await,
        }
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let caller = self.caller(&request).await?;
        let planned = self.plan(&caller, &query.query).await?;
        let description = planned.description.clone();
        // With nothing to bind, the plan runs as it is: kept for the run that follows.
        let plan = description.params.is_empty().then(|| {
            self.planned.keep(
                &caller,
                query.query.clone(),
                planned,
                PREPARED_FOR,
                Instant::now(),
            )
        });
        let parameters = Schema::new(
            description
                .params
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    Field::new(
                        format!("${}", i + 1),
                        t.clone().unwrap_or(DataType::Null),
                        true,
                    )
                })
                .collect::<Vec<_>>(),
        );
        let ipc = |schema: &Schema| -> Result<bytes::Bytes, Status> {
            let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
                .try_into()
                .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
            Ok(bytes)
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: Handle::new(query.query, plan).encode().into(),
            dataset_schema: ipc(&description.schema)?,
            parameter_schema: ipc(&parameters)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.caller(&request).await?;
        let prepared = handle(&query.prepared_statement_handle)?;
        // Each message checked before Arrow reads it (a declared size is not trusted).
        let mut checker = adit_ipc::Checker::default();
        let checked = request
            .into_inner()
            .map_err(FlightError::from)
            .map(move |data| {
                let data = data?;
                if !data.data_header.is_empty() {
                    checker
                        .message(&data.data_header, data.data_body.len())
                        .map_err(FlightError::ProtocolError)?;
                }
                Ok(data)
            });
        let mut batches = FlightRecordBatchStream::new_from_flight_data(checked);
        let row = match batches.next().await {
            Some(Ok(batch)) => batch,
            Some(Err(e)) => return Err(Status::invalid_argument(format!("parameters: {e}"))),
            None => return Err(Status::invalid_argument("no parameter values were sent")),
        };
        if batches.next().await.is_some() {
            return Err(Status::invalid_argument(
                "parameters are bound one row at a time",
            ));
        }
        let bound = prepared.bound(&row).map_err(Status::invalid_argument)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(bound.encode().into()),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(&request).await?;
        let prepared = handle(&query.prepared_statement_handle)?;
        let params = prepared.params().map_err(Status::invalid_argument)?;
        if params.is_some() {
            // Bound values: the handle carries them to the DoGet, which plans with them.
            let schema = self.schema(&caller, &prepared.sql).await?;
            return info(
                &schema,
                query.as_any().encode_to_vec(),
                request.into_inner(),
            );
        }
        // No values to bind: the plan made when it was prepared, if it still waits, else
        // planned here; kept for the DoGet as a statement's plan is (its ticket is a
        // statement's; an expired plan is planned again there).
        if let Some(id) = prepared.plan
            && let Some(schema) = self
                .planned
                .renew(&caller, id, &prepared.sql, Instant::now())
        {
            return kept_info(&schema, id, &prepared.sql, request.into_inner());
        }
        self.planned_info(&caller, prepared.sql, request.into_inner())
            .await
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let caller = self.caller(&request).await?;
        let prepared = handle(&query.prepared_statement_handle)?;
        let params = prepared.params().map_err(Status::invalid_argument)?;
        self.run(&caller, &prepared.sql, params).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        // Nothing is kept on the server for a prepared statement.
        self.caller(&request).await.map(|_| ())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.listing(request, &schema, query.as_any().encode_to_vec())
            .await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.caller(&request).await?;
        let mut builder = query.into_builder();
        for row in self
            .strings("SELECT DISTINCT table_catalog FROM information_schema.tables ORDER BY 1")
            .await?
        {
            builder.append(row.concat());
        }
        one(builder.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.listing(request, &schema, query.as_any().encode_to_vec())
            .await
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.caller(&request).await?;
        let mut builder = query.into_builder();
        let sql = "SELECT DISTINCT table_catalog, table_schema FROM information_schema.tables \
                   ORDER BY 1, 2";
        for row in self.strings(sql).await? {
            if let [catalog, schema] = row.as_slice() {
                builder.append(catalog, schema);
            }
        }
        one(builder.build())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.listing(request, &schema, query.as_any().encode_to_vec())
            .await
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let caller = self.caller(&request).await?;
        let with_schema = query.include_schema;
        let mut builder = query.into_builder();
        let sql = "SELECT table_catalog, table_schema, table_name, table_type \
                   FROM information_schema.tables ORDER BY 1, 2, 3";
        for row in self.strings(sql).await? {
            let [catalog, schema, table, kind] = row.as_slice() else {
                continue;
            };
            let kind = if kind == "BASE TABLE" {
                "TABLE"
            } else {
                kind.as_str()
            };
            let columns = if with_schema {
                let all = format!(
                    "SELECT * FROM {}.{}.{}",
                    quoted(catalog),
                    quoted(schema),
                    quoted(table)
                );
                self.schema(&caller, &all).await?
            } else {
                Arc::new(Schema::empty())
            };
            builder
                .append(catalog, schema, table, kind, &columns)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        one(builder.build())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.listing(request, &schema, query.as_any().encode_to_vec())
            .await
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.caller(&request).await?;
        let mut builder = query.into_builder();
        builder.append("TABLE");
        builder.append("VIEW");
        one(builder.build())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.info).schema();
        self.listing(request, &schema, query.as_any().encode_to_vec())
            .await
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.caller(&request).await?;
        one(query.into_builder(&self.info).build())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    #[test]
    fn a_basic_login_gives_its_password_as_the_token() {
        let value = format!("Basic {}", STANDARD.encode("grafana:read-token-1"));
        assert_eq!(basic_password(&value).as_deref(), Some("read-token-1"));
        let unpadded = format!(
            "Basic {}",
            STANDARD.encode("grafana:t").trim_end_matches('=')
        );
        assert_eq!(basic_password(&unpadded).as_deref(), Some("t"));
        let colon = format!("Basic {}", STANDARD.encode("u:a:b"));
        assert_eq!(basic_password(&colon).as_deref(), Some("a:b"));
        assert_eq!(basic_password("Bearer abc"), None);
        assert_eq!(basic_password("Basic !!!"), None);
        assert_eq!(quoted("we\"ird"), "\"we\"\"ird\"");
    }

    /// Issue 56: a JWT with a cluster `worker` claim is refused where every call is
    /// authenticated, as over HTTP and PostgreSQL; the same JWT without the claim is let in.
    #[tokio::test]
    async fn a_worker_jwt_is_refused_on_every_call() {
        use crate::testing;
        let dir = tempfile::tempdir().unwrap();
        let flight = Arc::new(Flight {
            engine: testing::engine(dir.path()),
            tokens: Arc::new(adit_testkit::jwt::tokens()),
            admission: Arc::new(adit_sql::admission::Admission::new(Default::default())),
            lockout: Arc::new(adit_auth::lockout::Lockout::new(Default::default())),
            config: Default::default(),
        });
        let service = Service::new(flight).unwrap();
        let call = |jwt: String| {
            let mut request = Request::new(());
            let value: tonic::metadata::AsciiMetadataValue =
                format!("Bearer {jwt}").parse().unwrap();
            request.metadata_mut().insert("authorization", value);
            request
        };
        let worker = call(adit_testkit::jwt::signed("rig-7", Some("rig-7")));
        let refused = service.caller(&worker).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
        assert!(refused.message().contains("coordinator"), "{refused}");
        let plain = call(adit_testkit::jwt::signed("alice", None));
        assert_eq!(service.caller(&plain).await.unwrap().name, "alice");
    }
}
