//! Parsing and checking `#[event(...)]`.

use std::collections::BTreeMap;

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Expr, LitInt, LitStr, Path};

use crate::name;

/// What `#[event(...)]` says, checked.
pub(crate) struct EventAttrs {
    /// The event's name literal (its span is kept for the generated constant).
    pub name: LitStr,
    /// The schema version.
    pub version: u32,
    /// The upcasters, ordered by `from`.
    pub upcasts: Vec<Upcast>,
    /// `crate = "..."`: the path to the crate with `IntegrationEvent` and `Upcaster`.
    pub krate: Option<Path>,
}

/// One `upcast(from = N, with = f)`.
pub(crate) struct Upcast {
    /// The version it reads.
    pub from: u32,
    /// The `from` literal, for error spans.
    pub from_lit: LitInt,
    /// The conversion function.
    pub with: Expr,
}

/// The keys, as they are listed in error messages.
const KEYS: &str = "`name`, `version`, `upcast(from = N, with = path::to_fn)` or `crate`";

/// The error for an `#[event]` without a name.
const MISSING_NAME: &str = "missing event name: add #[event(name = \"bounded-context.aggregate.event\")], \
     e.g. #[event(name = \"orders.order.created\", version = 1)]";

/// Collects every error rather than stopping at the first.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(existing) => existing.combine(error),
            None => self.0 = Some(error),
        }
    }
}

impl EventAttrs {
    /// Reads every `#[event(...)]` attribute; `ident_span` is where to report a missing name.
    pub(crate) fn parse(attrs: &[Attribute], ident_span: Span) -> syn::Result<Self> {
        let mut errors = Errors::default();
        let mut name: Option<LitStr> = None;
        let mut version: Option<(u32, LitInt)> = None;
        let mut krate: Option<Path> = None;
        let mut upcasts: Vec<Upcast> = Vec::new();

        for attr in attrs.iter().filter(|a| a.path().is_ident("event")) {
            let parsed = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("name") {
                    let lit: LitStr = meta.value()?.parse()?;
                    if name.is_some() {
                        errors.push(syn::Error::new(lit.span(), "`name` is given twice"));
                    } else {
                        if let Err(message) = name::check(&lit.value()) {
                            errors.push(syn::Error::new(lit.span(), message));
                        }
                        name = Some(lit);
                    }
                } else if meta.path.is_ident("version") {
                    let lit: LitInt = meta.value()?.parse()?;
                    let value: u32 = lit.base10_parse()?;
                    if version.is_some() {
                        errors.push(syn::Error::new(lit.span(), "`version` is given twice"));
                    } else if value == 0 {
                        errors.push(syn::Error::new(
                            lit.span(),
                            "event version must be 1 or more: versions count from 1",
                        ));
                    }
                    version.get_or_insert((value, lit));
                } else if meta.path.is_ident("upcast") {
                    upcasts.push(parse_upcast(&meta)?);
                } else if meta.path.is_ident("crate") {
                    let lit: LitStr = meta.value()?.parse()?;
                    let path: Path = lit.parse().map_err(|_| {
                        syn::Error::new(
                            lit.span(),
                            "`crate` must be a path to ferry or ferry_core, e.g. `crate = \"ferry\"`",
                        )
                    })?;
                    if krate.replace(path).is_some() {
                        errors.push(syn::Error::new(lit.span(), "`crate` is given twice"));
                    }
                } else {
                    let key = meta
                        .path
                        .get_ident()
                        .map_or_else(|| "this key".to_owned(), |i| format!("`{i}`"));
                    errors.push(meta.error(format!(
                        "unknown key {key} in #[event(...)]: expected {KEYS}"
                    )));
                    // Skip its value, so that the keys after it are still read.
                    if meta.input.peek(syn::Token![=]) {
                        let _: Expr = meta.value()?.parse()?;
                    } else if meta.input.peek(syn::token::Paren) {
                        let _: proc_macro2::Group = meta.input.parse()?;
                    }
                }
                Ok(())
            });
            if let Err(error) = parsed {
                errors.push(error);
            }
        }

        let version_value = version.as_ref().map_or(1, |(v, _)| *v);
        check_upcasts(&mut upcasts, version_value, &mut errors);

        // A missing name is reported only on its own: after a syntax error the rest of the
        // attribute was not read, so the name may well be there.
        let name = match (name, errors.0) {
            (Some(name), None) => name,
            (_, Some(error)) => return Err(error),
            (None, None) => return Err(syn::Error::new(ident_span, MISSING_NAME)),
        };
        Ok(Self {
            name,
            version: version_value,
            upcasts,
            krate,
        })
    }
}

/// Parses `upcast(from = N, with = f)`.
fn parse_upcast(meta: &ParseNestedMeta<'_>) -> syn::Result<Upcast> {
    let mut from: Option<LitInt> = None;
    let mut with: Option<Expr> = None;
    meta.parse_nested_meta(|inner| {
        if inner.path.is_ident("from") {
            let lit: LitInt = inner.value()?.parse()?;
            if from.replace(lit).is_some() {
                return Err(inner.error("`from` is given twice in this upcast"));
            }
        } else if inner.path.is_ident("with") {
            let expr: Expr = inner.value()?.parse()?;
            if with.replace(expr).is_some() {
                return Err(inner.error("`with` is given twice in this upcast"));
            }
        } else {
            return Err(inner.error(
                "unknown key in upcast(...): expected `from = N` (the version it reads) and \
                 `with = path::to_fn` (a fn(serde_json::Value) -> Result<serde_json::Value, String>)",
            ));
        }
        Ok(())
    })?;
    let (Some(from_lit), Some(with)) = (from, with) else {
        return Err(
            meta.error("an upcast needs both `from` and `with`: upcast(from = 1, with = v1_to_v2)")
        );
    };
    let from = from_lit.base10_parse()?;
    Ok(Upcast {
        from,
        from_lit,
        with,
    })
}

/// Checks the upcasters against the version: each `from` in `1..version`, no two alike, and a
/// chain with no gap up to `version - 1`. Sorts them by `from`.
fn check_upcasts(upcasts: &mut [Upcast], version: u32, errors: &mut Errors) {
    let mut seen: BTreeMap<u32, Span> = BTreeMap::new();
    for upcast in upcasts.iter() {
        let span = upcast.from_lit.span();
        if upcast.from == 0 {
            errors.push(syn::Error::new(
                span,
                "upcast from version 0: versions count from 1",
            ));
        } else if upcast.from >= version {
            errors.push(syn::Error::new(
                span,
                format!(
                    "upcast from version {} is not older than the event's version {version}: an \
                     upcaster turns version N into N + 1, so `from` must be below `version`",
                    upcast.from
                ),
            ));
        } else if seen.insert(upcast.from, span).is_some() {
            errors.push(syn::Error::new(
                span,
                format!(
                    "a second upcast from version {}: each older version has at most one upcaster",
                    upcast.from
                ),
            ));
        }
    }
    // The versions with an upcaster must run without a gap up to `version - 1`, or a message
    // at the oldest one would be upcast part way and then be stuck.
    let oldest = seen.first_key_value().map(|(&v, _)| v);
    let missing = oldest.and_then(|oldest| (oldest..version).find(|v| !seen.contains_key(v)));
    if let Some(missing) = missing {
        if let Some((&before, &span)) = seen.range(..missing).next_back() {
            errors.push(syn::Error::new(
                span,
                format!(
                    "upcasters must chain up to version {version}: there is one from version \
                     {before} but none from version {missing}"
                ),
            ));
        }
    }
    upcasts.sort_by_key(|u| u.from);
}
