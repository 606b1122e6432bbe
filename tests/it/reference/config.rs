//! The configuration page, from the config types themselves: the workspace's source is parsed
//! (`syn`) and walked from `adit::config::Config` through every field whose type is another
//! deserialized struct of the workspace, so each key's name (serde's renames), type and meaning
//! (its doc comment) come from the code; each default is what serde gives a section that is
//! present but empty (`toml::from_str` of every section's header, printed with `{:#?}`).

use std::collections::HashMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use syn::{Attribute, Fields, GenericArgument, Item, PathArguments, Type, UseTree};

/// A deserialized struct or enum of the workspace, with the file it was found in.
struct Found {
    krate: String,
    file: PathBuf,
    item: Item,
}

/// Every deserialized type of the workspace by name, and each file's `use` names.
struct Index {
    types: HashMap<String, Vec<Found>>,
    uses: HashMap<PathBuf, HashMap<String, Vec<String>>>,
}

/// One config key as the page shows it.
struct Key {
    /// Serde's dotted path, e.g. `pool.server.listen`.
    path: String,
    /// The Rust field names' path, e.g. `pool.server.listen`, to find its default.
    rust: String,
    kind: String,
    doc: String,
}

/// A section (`[a.b]`, `[[a.b]]` or `[a.b.<name>]`) and its keys.
struct Section {
    header: String,
    rust: String,
    /// Present in the TOML that yields the defaults (a plain or optional table).
    plain: bool,
    doc: String,
    keys: Vec<Key>,
}

/// `docs/src/reference/config.md`.
pub(super) fn page() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let index = Index::read(root);
    let config = index.find("Config", "adit", &root.join("src/config.rs"));
    let mut sections = Vec::new();
    let top = Section {
        header: String::new(),
        rust: String::new(),
        plain: true,
        doc: String::new(),
        keys: Vec::new(),
    };
    index.walk(config, top, &mut sections);
    let defaults = defaults(&sections);
    render(&sections, &defaults)
}

impl Index {
    fn read(root: &Path) -> Self {
        let mut index = Index {
            types: HashMap::new(),
            uses: HashMap::new(),
        };
        for (krate, dir) in crates(root) {
            for file in rust_files(&dir) {
                let text = std::fs::read_to_string(&file).unwrap();
                let parsed =
                    syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                let mut uses = HashMap::new();
                index.items(&krate, &file, parsed.items, &mut uses);
                index.uses.insert(file, uses);
            }
        }
        index
    }

    /// Keeps the deserialized types and `use` names of `items`, inline modules included.
    fn items(
        &mut self,
        krate: &str,
        file: &Path,
        items: Vec<Item>,
        uses: &mut HashMap<String, Vec<String>>,
    ) {
        for item in items {
            match &item {
                Item::Use(u) => use_names(&u.tree, &mut Vec::new(), uses),
                Item::Mod(m) if m.content.is_some() && !is_cfg_test(&m.attrs) => {
                    let content = m.content.clone().unwrap().1;
                    self.items(krate, file, content, uses);
                }
                Item::Struct(s) if derives_deserialize(&s.attrs) => self.keep(krate, file, item),
                Item::Enum(e) if derives_deserialize(&e.attrs) => self.keep(krate, file, item),
                _ => {}
            }
        }
    }

    fn keep(&mut self, krate: &str, file: &Path, item: Item) {
        let name = match &item {
            Item::Struct(s) => s.ident.to_string(),
            Item::Enum(e) => e.ident.to_string(),
            _ => return,
        };
        self.types.entry(name).or_default().push(Found {
            krate: krate.to_string(),
            file: file.to_path_buf(),
            item,
        });
    }

    /// The type `name` as file `from` of crate `krate` names it.
    fn find(&self, name: &str, krate: &str, from: &Path) -> &Found {
        self.resolve(&[name.to_string()], krate, from)
            .unwrap_or_else(|| panic!("{name} not found"))
    }

    /// The deserialized type a path in `from` names, if it is one of the workspace's.
    fn resolve(&self, path: &[String], krate: &str, from: &Path) -> Option<&Found> {
        let name = path.last()?;
        let full = match path {
            [one] => self
                .uses
                .get(from)
                .and_then(|u| u.get(one))
                .cloned()
                .unwrap_or_default(),
            _ => path.to_vec(),
        };
        // `adit_stratum::…` is the `stratum` crate; anything else is this crate's own module
        // (a name from another crate is not among the workspace's types).
        let target = match full.first().and_then(|f| f.strip_prefix("adit_")) {
            Some(other) => other.to_string(),
            None => krate.to_string(),
        };
        let found = self.types.get(full.last().unwrap_or(name))?;
        found
            .iter()
            .find(|f| f.krate == target && f.file == from)
            .or_else(|| found.iter().find(|f| f.krate == target))
            // Re-exported from another crate (`adit_api::TokenConfig` is `adit_auth`'s).
            .or_else(|| (found.len() == 1).then(|| &found[0]))
    }

    /// Adds `section` and every section below it, struct by struct.
    fn walk(&self, found: &Found, section: Section, out: &mut Vec<Section>) {
        let Item::Struct(s) = &found.item else {
            panic!("{} is a section but not a struct", section.header)
        };
        let rename_all = serde_value(&s.attrs, "rename_all");
        let Fields::Named(fields) = &s.fields else {
            return;
        };
        let at = out.len();
        out.push(section.clone_header());
        for field in &fields.named {
            if serde_flag(&field.attrs, "skip") || serde_flag(&field.attrs, "skip_deserializing") {
                continue;
            }
            let ident = field.ident.as_ref().unwrap().to_string();
            let key = serde_value(&field.attrs, "rename")
                .unwrap_or_else(|| renamed(&ident, rename_all.as_deref()));
            let doc = doc(&field.attrs);
            let path = join(&section.header_path(), &key);
            let rust = join(&section.rust, &ident);
            let humantime =
                serde_value(&field.attrs, "with").is_some_and(|w| w.contains("humantime"));
            let shape = Shape::of(&field.ty);
            let nested = shape
                .inner()
                .and_then(|p| self.resolve(&p, &found.krate, &found.file))
                .filter(|f| matches!(f.item, Item::Struct(_)));
            match (nested, &shape) {
                (Some(inner), _) if serde_flag(&field.attrs, "flatten") => {
                    let flat = Section {
                        header: section.header.clone(),
                        rust: rust.clone(),
                        plain: section.plain,
                        doc: String::new(),
                        keys: Vec::new(),
                    };
                    let mut below = Vec::new();
                    self.walk(inner, flat, &mut below);
                    let mut below = below.into_iter();
                    if let Some(first) = below.next() {
                        out[at].keys.extend(first.keys);
                    }
                    out.extend(below);
                }
                (Some(inner), _) => {
                    // A table, an array of tables, or a table of tables by name; only a table
                    // can be written empty to read its defaults.
                    let (header, plain) = match &shape {
                        Shape::List(_) => (format!("[[{path}]]"), false),
                        Shape::Map(_) => (format!("[{path}.<name>]"), false),
                        _ => (format!("[{path}]"), section.plain),
                    };
                    let below = Section {
                        header,
                        rust,
                        plain,
                        doc,
                        keys: Vec::new(),
                    };
                    self.walk(inner, below, out);
                }
                _ => {
                    let kind = self.kind(&shape, humantime, found);
                    out[at].keys.push(Key {
                        path,
                        rust,
                        kind,
                        doc,
                    });
                }
            }
        }
    }

    /// A key's type in words: `string`, `duration`, `list of string`, or the values an enum
    /// takes.
    fn kind(&self, shape: &Shape, humantime: bool, found: &Found) -> String {
        let leaf = |path: &[String]| -> String {
            let name = path.last().map(String::as_str).unwrap_or("?");
            match name {
                "String" | "str" => "string".into(),
                "PathBuf" => "path".into(),
                "bool" => "boolean".into(),
                "u8" | "u16" | "u32" | "u64" | "usize" | "i32" | "i64" => "integer".into(),
                // An exact decimal (`pipelines::pool::split::Factor`), written as a number.
                "f32" | "f64" | "Factor" => "number".into(),
                "Duration" => "duration".into(),
                "SocketAddr" => "address".into(),
                _ if humantime => "duration".into(),
                _ => match self
                    .resolve(path, &found.krate, &found.file)
                    .map(|f| &f.item)
                {
                    // Read from text (`#[serde(try_from = "String")]`).
                    Some(Item::Enum(e)) if serde_value(&e.attrs, "try_from").is_some() => {
                        "string".into()
                    }
                    Some(Item::Enum(e)) => variants(e),
                    _ => format!("`{name}`"),
                },
            }
        };
        match shape {
            Shape::Plain(p) | Shape::Optional(p) => leaf(p),
            Shape::List(t) => format!("list of {}", self.kind(&Shape::of(t), humantime, found)),
            Shape::Map(t) => format!("table of {}", self.kind(&Shape::of(t), humantime, found)),
            Shape::Other(t) => format!("`{t}`"),
        }
    }
}

impl Section {
    fn clone_header(&self) -> Section {
        Section {
            header: self.header.clone(),
            rust: self.rust.clone(),
            plain: self.plain,
            doc: self.doc.clone(),
            keys: Vec::new(),
        }
    }

    /// The dotted path keys below this section start with.
    fn header_path(&self) -> String {
        self.header
            .trim_matches(|c| c == '[' || c == ']')
            .to_string()
    }
}

/// How a field holds its type: itself, optionally, as a list, or as a table by name.
enum Shape {
    Plain(Vec<String>),
    Optional(Vec<String>),
    List(Type),
    Map(Type),
    Other(String),
}

impl Shape {
    fn of(ty: &Type) -> Shape {
        let Type::Path(p) = ty else {
            return Shape::Other(compact(ty));
        };
        let segments: Vec<String> = p
            .path
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        let args = type_args(&p.path.segments.last().unwrap().arguments);
        match (segments.last().map(String::as_str), args.as_slice()) {
            (Some("Option" | "Box"), [inner]) => match Shape::of(inner) {
                Shape::Plain(p) => Shape::Optional(p),
                other => other,
            },
            (Some("Vec" | "BTreeSet" | "HashSet"), [inner]) => Shape::List((*inner).clone()),
            (Some("HashMap" | "BTreeMap"), [_, value]) => Shape::Map((*value).clone()),
            (_, []) => Shape::Plain(segments),
            _ => Shape::Other(compact(ty)),
        }
    }

    /// The workspace type a section would be made of.
    fn inner(&self) -> Option<Vec<String>> {
        match self {
            Shape::Plain(p) | Shape::Optional(p) => Some(p.clone()),
            Shape::List(t) | Shape::Map(t) => match Shape::of(t) {
                Shape::Plain(p) => Some(p),
                _ => None,
            },
            Shape::Other(_) => None,
        }
    }
}

fn type_args(args: &PathArguments) -> Vec<&Type> {
    match args {
        PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .filter_map(|g| match g {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A type as written, without the token stream's spaces.
fn compact(ty: &Type) -> String {
    quote::ToTokens::to_token_stream(ty)
        .to_string()
        .replace(' ', "")
        .replace(',', ", ")
}

/// An enum's values as a config file writes them.
fn variants(e: &syn::ItemEnum) -> String {
    let rename_all = serde_value(&e.attrs, "rename_all");
    let names: Vec<String> = e
        .variants
        .iter()
        .filter(|v| !serde_flag(&v.attrs, "skip") && !serde_flag(&v.attrs, "other"))
        .map(|v| {
            let name = serde_value(&v.attrs, "rename")
                .unwrap_or_else(|| renamed(&v.ident.to_string(), rename_all.as_deref()));
            match v.fields {
                Fields::Unit => format!("`\"{name}\"`"),
                _ => format!("`{name}`…"),
            }
        })
        .collect();
    names.join(", ")
}

/// The workspace's crates: the root package (`adit`, in `src/`) and each member folder
/// (`stratum/` is `adit_stratum`).
fn crates(root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = vec![("adit".to_string(), root.join("src"))];
    for entry in std::fs::read_dir(root).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("Cargo.toml").is_file() && dir.join("src").is_dir() {
            let name = dir.file_name().unwrap().to_string_lossy().to_string();
            out.push((name, dir.join("src")));
        }
    }
    out.sort();
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// `use a::b::{C, D as E}` as `C -> [a, b, C]`, `E -> [a, b, D]`.
fn use_names(tree: &UseTree, prefix: &mut Vec<String>, out: &mut HashMap<String, Vec<String>>) {
    match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_names(&p.tree, prefix, out);
            prefix.pop();
        }
        UseTree::Name(n) => {
            let mut full = prefix.clone();
            full.push(n.ident.to_string());
            out.insert(n.ident.to_string(), full);
        }
        UseTree::Rename(r) => {
            let mut full = prefix.clone();
            full.push(r.ident.to_string());
            out.insert(r.rename.to_string(), full);
        }
        UseTree::Group(g) => {
            for tree in &g.items {
                use_names(tree, prefix, out);
            }
        }
        UseTree::Glob(_) => {}
    }
}

fn is_cfg_test(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && quote::ToTokens::to_token_stream(a)
                .to_string()
                .contains("test")
    })
}

fn derives_deserialize(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("derive")
            && quote::ToTokens::to_token_stream(a)
                .to_string()
                .contains("Deserialize")
    })
}

/// The `#[serde(...)]` items of `attrs`, as written (`rename = "x"`, `default`…).
fn serde_items(attrs: &[Attribute]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let _ = attr.parse_nested_meta(|meta| {
            let name = meta
                .path
                .get_ident()
                .map(|i| i.to_string())
                .unwrap_or_default();
            let value = match meta.value() {
                Ok(v) => v.parse::<syn::LitStr>().ok().map(|s| s.value()),
                Err(_) => None,
            };
            out.push((name, value));
            Ok(())
        });
    }
    out
}

fn serde_flag(attrs: &[Attribute], name: &str) -> bool {
    serde_items(attrs).iter().any(|(n, _)| n == name)
}

fn serde_value(attrs: &[Attribute], name: &str) -> Option<String> {
    serde_items(attrs)
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v)
}

/// A field or variant name as serde's `rename_all` writes it.
fn renamed(ident: &str, rule: Option<&str>) -> String {
    let snake = || {
        let mut out = String::new();
        for (i, c) in ident.chars().enumerate() {
            if c.is_uppercase() && i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        }
        out
    };
    match rule {
        Some("snake_case") => snake(),
        Some("kebab-case") => snake().replace('_', "-"),
        Some("lowercase") => ident.to_lowercase(),
        Some("UPPERCASE") => ident.to_uppercase(),
        _ => ident.to_string(),
    }
}

/// A doc comment's lines as one paragraph.
pub(super) fn doc(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value().trim().to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    // Rustdoc's links (`[`crate::compact`]`) as plain code.
    let text = lines.join(" ");
    let links = code_links(&text);
    links.trim().to_string()
}

/// `[`x`]` (an intra-doc link, with no target in the book) as `` `x` ``.
fn code_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("[`") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match after.find("`]") {
            Some(end) if !after[end + 2..].starts_with('(') => {
                out.push_str(&after[..end + 1]);
                rest = &after[end + 2..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Each key's default by its Rust path: the config serde gives for every plain and optional
/// section present and empty. A section that cannot be empty (a required key) is left out,
/// and its keys show no default.
fn defaults(sections: &[Section]) -> HashMap<String, String> {
    let mut headers: Vec<&str> = sections
        .iter()
        .filter(|s| s.plain && !s.header.is_empty())
        .map(|s| s.header.as_str())
        .collect();
    loop {
        let toml = headers.join("\n");
        match toml::from_str::<adit::config::Config>(&toml) {
            Ok(config) => return debug_values(&format!("{config:#?}")),
            Err(e) => {
                assert!(!headers.is_empty(), "an empty config does not parse: {e}");
                let at = e.span().map_or(0, |s| s.start);
                let line = toml[..at.min(toml.len())].matches('\n').count();
                let bad = headers[line.min(headers.len() - 1)].to_string();
                let inner = bad.trim_end_matches(']').to_string();
                headers.retain(|h| *h != bad && !h.starts_with(&format!("{inner}.")));
            }
        }
    }
}

/// `field: value,` lines of a `{:#?}` print by their dotted field path; a struct's fields
/// under its own, a list's or map's items not at all (the list itself shows as `[…]`).
fn debug_values(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut skip_below: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let line = line.trim().trim_end_matches(',');
        if let Some(depth) = skip_below {
            if indent > depth {
                continue;
            }
            skip_below = None;
        }
        while stack.last().is_some_and(|(d, _)| *d >= indent) {
            stack.pop();
        }
        let path = || {
            stack
                .iter()
                .filter_map(|(_, k)| k.clone())
                .collect::<Vec<_>>()
                .join(".")
        };
        match line.split_once(": ") {
            Some((key, value)) if key.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                let full = join(&path(), key);
                if value.ends_with('{') && value.len() > 1 || value.ends_with('(') {
                    stack.push((indent, Some(key.to_string())));
                } else if value == "{" || value == "[" {
                    out.insert(full, "…".to_string());
                    skip_below = Some(indent);
                } else {
                    out.insert(full, value.to_string());
                }
            }
            _ if line.ends_with('{') || line.ends_with('(') => stack.push((indent, None)),
            _ => {}
        }
    }
    out
}

/// A `{:#?}` value as a config file would write it.
fn shown(value: &str, kind: &str) -> String {
    let value = value.trim();
    if value == "None" {
        return String::new();
    }
    let value = value
        .strip_prefix("Some(")
        .and_then(|v| v.strip_suffix(')'))
        .unwrap_or(value);
    if kind == "duration"
        && let Some(d) = debug_duration(value)
    {
        return format!("`\"{}\"`", humantime::format_duration(d));
    }
    // An enum's unit variant (`Pplns`) as the file writes it (`"pplns"`).
    if kind.contains("`\"") && value.chars().all(char::is_alphanumeric) {
        return format!("`\"{}\"`", renamed(value, Some("snake_case")));
    }
    format!("`{value}`")
}

/// `Duration`'s Debug (`5s`, `500ms`, `1.5s`, `604800s`) back to a duration.
fn debug_duration(text: &str) -> Option<std::time::Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_alphabetic())?);
    let n: f64 = number.parse().ok()?;
    let scale = match unit {
        "s" => 1.0,
        "ms" => 1e-3,
        "µs" => 1e-6,
        "ns" => 1e-9,
        _ => return None,
    };
    Some(std::time::Duration::from_secs_f64(n * scale))
}

fn render(sections: &[Section], defaults: &HashMap<String, String>) -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from the config types (their fields, serde names and doc comments, and \
         the defaults serde gives) by `cargo nextest run --workspace -E 'test(/^reference::/)'`; \
         do not edit by hand.\n\n\
         A TOML file (`--config`), then `ADIT_*` variables, then flags. Every key has a \
         variable: its path in capitals with `__` between levels, e.g. \
         `ADIT_PIPELINES__ENERGY__MAX_GAP=3m` (values are read as TOML, else as text). Unknown \
         keys and bad values stop the start with an error that names the key. A default left \
         blank means the key is absent unless set (its meaning says what absent does). How to \
         use the settings: [Configuration](../operate/config.md); every key with an example \
         value: [`adit.example.toml`](adit.example.toml).\n\n",
    );
    for section in sections.iter().filter(|s| !s.keys.is_empty()) {
        let title = if section.header.is_empty() {
            "Top level".to_string()
        } else {
            format!("`{}`", section.header)
        };
        let _ = write!(out, "## {title}\n\n");
        if !section.doc.is_empty() {
            let _ = write!(out, "{}\n\n", super::cli::cell(&section.doc));
        }
        out.push_str("| key | type | default | meaning |\n| --- | --- | --- | --- |\n");
        for key in &section.keys {
            let default = defaults
                .get(&key.rust)
                .map(|v| shown(v, &key.kind))
                .unwrap_or_default();
            let name = key.path.rsplit('.').next().unwrap_or(&key.path);
            let _ = writeln!(
                out,
                "| `{name}` | {} | {} | {} |",
                super::cli::cell(&key.kind),
                super::cli::cell(&default),
                super::cli::cell(&key.doc)
            );
        }
        out.push('\n');
    }
    out
}
