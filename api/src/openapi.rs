//! The frame of the OpenAPI document served at `/api/v1/openapi.json`; the routes add their
//! own paths to it.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

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
    modifiers(&Bearer),
    tags((name = "sql", description = "Read-only SQL"), (name = "dashboards", description = "Dashboards people build and share"), (name = "pool", description = "Pool views"),
         (name = "registry", description = "Sites, pools, machines, sensors and meters"),
         (name = "farm", description = "Violations of the registry's limits, and what each machine earns against its energy"),
         (name = "ingest", description = "Events pushed over HTTP"),
         (name = "proofs", description = "What a pool publishes for its miners to check, open without a token"),
         (name = "ops", description = "Health and metrics"))
)]
pub struct ApiDoc;

/// The document's frame: its title, the bearer scheme and the tags. Each
/// route module adds its own paths, and the schemas they name, where it declares its routes
/// (`routes!`), so a route is written once.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
