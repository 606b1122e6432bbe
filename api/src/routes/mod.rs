//! The API's routes, a module per subject: every file in this folder is one, with a
//! `pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState>` that puts each of its
//! routes behind the role it needs (`access.at(Role::…, …)`). `build.rs` declares them all and
//! writes [`each`], which the server mounts, so adding a route module is adding its file; its
//! routes reach the OpenAPI document through `utoipa_axum::routes!`.

include!(concat!(env!("OUT_DIR"), "/routes.rs"));
