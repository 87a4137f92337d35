//! `#[derive(IntegrationEvent)]` for ferry.
//!
//! Use it through `ferry` (or `ferry_core`); see [`macro@IntegrationEvent`].
#![warn(missing_docs)]

mod attrs;
mod krate;
mod name;

use proc_macro::TokenStream;
use quote::quote;
use syn::{DeriveInput, parse_macro_input};

use attrs::EventAttrs;

/// Derives `IntegrationEvent` from `#[event(...)]`.
///
/// ```
/// use ferry_core::IntegrationEvent;
/// use serde::{Deserialize, Serialize};
///
/// fn v1_to_v2(mut v: serde_json::Value) -> Result<serde_json::Value, String> {
///     v["currency"] = "EUR".into();
///     Ok(v)
/// }
///
/// #[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
/// #[event(name = "orders.order.created", version = 2, upcast(from = 1, with = v1_to_v2))]
/// struct OrderCreated {
///     order_id: String,
///     currency: String,
/// }
///
/// assert_eq!(OrderCreated::NAME, "orders.order.created");
/// assert_eq!(OrderCreated::VERSION, 2);
/// assert_eq!(OrderCreated::UPCASTERS[0].from, 1);
/// ```
///
/// # Keys
///
/// - `name = "..."` (required): the event type, `{bounded-context}.{aggregate}.{event}`: three
///   dot-separated, non-empty segments of lowercase letters, digits and `-`. It is checked at
///   compile time:
///
///   ```compile_fail
///   # use serde::{Deserialize, Serialize};
///   #[derive(Serialize, Deserialize, ferry_macros::IntegrationEvent)]
///   #[event(name = "orders.created")] // error: two segments, not three
///   struct OrderCreated {
///       order_id: String,
///   }
///   ```
/// - `version = N` (default 1): the schema version, 1 or more.
/// - `upcast(from = N, with = path::to_fn)`, repeatable: an upcaster from version `N` to
///   `N + 1`, a `fn(serde_json::Value) -> Result<serde_json::Value, String>`. Each `from` must be
///   below `version`, appear once, and together they must chain without a gap up to
///   `version - 1`.
/// - `crate = "path"`: the path to the crate that defines `IntegrationEvent` and `Upcaster`. Not
///   needed normally: the macro reads the calling crate's `Cargo.toml` and uses its `ferry-core`
///   dependency, or else its `ferry` dependency (renames included).
///
/// Any other key is an error.
#[proc_macro_derive(IntegrationEvent, attributes(event))]
pub fn derive_integration_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let attrs = EventAttrs::parse(&input.attrs, input.ident.span())?;
    let krate = match &attrs.krate {
        Some(path) => quote!(#path),
        None => krate::detect(),
    };
    let ident = &input.ident;
    let name = &attrs.name;
    let version = attrs.version;
    let upcasters = if attrs.upcasts.is_empty() {
        None
    } else {
        let entries = attrs.upcasts.iter().map(|u| {
            let from = u.from;
            let with = &u.with;
            quote!(#krate::Upcaster { from: #from, apply: #with })
        });
        Some(quote! {
            const UPCASTERS: &'static [#krate::Upcaster] = &[#(#entries),*];
        })
    };
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::IntegrationEvent for #ident #type_generics #where_clause {
            const NAME: &'static str = #name;
            const VERSION: u32 = #version;
            #upcasters
        }
    })
}
