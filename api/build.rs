//! Lists the API's route modules: every file in `src/routes/` is one (with a
//! `pub(crate) fn routes(access: &Access) -> OpenApiRouter<AppState>`), declared and mounted by
//! the code this writes, so a new route module is its file alone.

use std::path::Path;
use std::{env, fs};

fn main() {
    let manifest = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("src").join("routes");
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = fs::read_dir(&dir)
        .expect("src/routes is readable")
        .map(|entry| entry.expect("a readable entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .filter_map(|path| Some(path.file_stem()?.to_str()?.to_string()))
        .filter(|name| name != "mod")
        .collect();
    names.sort();
    let mut out = String::new();
    for name in &names {
        let path = dir.join(format!("{name}.rs"));
        out.push_str(&format!(
            "#[path = {:?}]\npub mod {name};\n",
            path.display().to_string()
        ));
    }
    out.push_str(
        "/// Every route module's routes, each behind the roles it declares.\n\
         pub(crate) fn each(access: &crate::auth::Access) -> \
         utoipa_axum::router::OpenApiRouter<crate::state::AppState> {\n    \
         utoipa_axum::router::OpenApiRouter::new()",
    );
    for name in &names {
        out.push_str(&format!("\n        .merge({name}::routes(access))"));
    }
    out.push_str("\n}\n");
    let out_dir = env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    fs::write(Path::new(&out_dir).join("routes.rs"), out).expect("OUT_DIR is writable");
}
