//! `#[derive(IntegrationEvent)]` for ferry. (Being written.)

use proc_macro::TokenStream;
use quote::quote;
use syn::{DeriveInput, parse_macro_input};

/// Derives `ferry_core::IntegrationEvent` from `#[event(name = "…", version = N)]`.
#[proc_macro_derive(IntegrationEvent, attributes(event))]
pub fn derive_integration_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let ident = &input.ident;
    let mut name = None;
    let mut version = 1u32;
    for attr in &input.attrs {
        if attr.path().is_ident("event") {
            let r = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("name") {
                    let s: syn::LitStr = meta.value()?.parse()?;
                    name = Some(s.value());
                } else if meta.path.is_ident("version") {
                    let n: syn::LitInt = meta.value()?.parse()?;
                    version = n.base10_parse()?;
                }
                Ok(())
            });
            if let Err(e) = r {
                return e.to_compile_error().into();
            }
        }
    }
    let Some(name) = name else {
        return syn::Error::new_spanned(ident, "missing #[event(name = \"…\")]")
            .to_compile_error()
            .into();
    };
    let (ig, tg, wc) = input.generics.split_for_impl();
    quote! {
        impl #ig ::ferry_core::IntegrationEvent for #ident #tg #wc {
            const NAME: &'static str = #name;
            const VERSION: u32 = #version;
        }
    }
    .into()
}
