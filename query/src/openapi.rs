//! The OpenAPI document of every route, served at `/api/v1/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{
    alerts, bans, basics, commands, dashboards, live, overrides, receivers, registry, reports,
    views, violations,
};

/// Adds the bearer-token scheme the routes name.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from `[query] tokens`; its role (read, operate, admin) decides \
                         what it may call",
                    ))
                    .build(),
            ),
        );
    }
}

/// adit's HTTP API.
#[derive(OpenApi)]
#[openapi(
    info(title = "adit", description = "SQL over every table, pool views, ingest, health and metrics."),
    paths(
        basics::sql_get,
        basics::sql_post,
        basics::list_tables,
        basics::health,
        basics::ready,
        basics::metrics,
        views::pool_stats,
        views::pool_blocks,
        views::pool_payments,
        views::miner,
        views::workers,
        registry::list,
        registry::get_top,
        registry::get_scoped,
        registry::put_top,
        registry::put_scoped,
        registry::delete_top,
        registry::delete_scoped,
        violations::list,
        violations::create,
        violations::resolve,
        overrides::create,
        overrides::cancel,
        overrides::list,
        commands::create,
        alerts::list,
        alerts::groups,
        alerts::group,
        alerts::put,
        alerts::delete,
        alerts::evaluate,
        receivers::list,
        receivers::put,
        receivers::delete,
        receivers::put_route,
        receivers::delete_route,
        receivers::test,
        dashboards::list,
        dashboards::get_one,
        dashboards::put,
        dashboards::delete,
        dashboards::revisions,
        dashboards::query_panel,
        dashboards::variable_values,
        dashboards::public_get,
        dashboards::public_query_panel,
        dashboards::public_variable_values,
        alerts::silence,
        alerts::list_silences,
        alerts::acknowledge,
        alerts::resolve,
        bans::list,
        bans::add,
        bans::lift,
        live::live,
        reports::compliance,
    ),
    components(schemas(
        basics::SqlBody,
        violations::NewViolation,
        violations::Resolution,
        overrides::NewOverride,
        overrides::Cancellation,
        commands::NewCommand,
        commands::OperatorAction,
        alerts::NewSilence,
        alerts::AlertAct,
        alerts::Evaluate,
        bans::NewBan
    )),
    modifiers(&Bearer),
    tags((name = "sql", description = "Read-only SQL"), (name = "dashboards", description = "Dashboards people build and share"), (name = "pool", description = "Pool views"),
         (name = "registry", description = "Sites, pools, machines, sensors and meters"),
         (name = "farm", description = "Violations of the registry's limits"),
         (name = "ops", description = "Health and metrics"))
)]
pub struct ApiDoc;

/// The document as JSON, with the routes other crates mount (`extra`: path → method, summary).
pub fn document(extra: &[(&str, &str, &str)]) -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for (path, method, summary) in extra {
            paths.insert(
                (*path).to_string(),
                serde_json::json!({ *method: {
                    "summary": summary,
                    "security": [{"bearer": []}],
                    "responses": {"200": {"description": "accepted"}, "400": {"description": "refused, with the reason"},
                                  "401": {"description": "no or unknown token"}, "403": {"description": "the token's role is too low"}}
                }}),
            );
        }
    }
    doc
}
