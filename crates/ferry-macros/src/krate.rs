//! Which path names the crate that defines `IntegrationEvent` and `Upcaster`.

use proc_macro_crate::{FoundCrate, crate_name};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// The path to use in the generated code, from the calling crate's `Cargo.toml`: its
/// `ferry-core` dependency if it has one, else its `ferry` dependency (the facade re-exports
/// `IntegrationEvent` and `Upcaster` at its root), else `::ferry_core`. Renamed dependencies
/// are followed.
pub(crate) fn detect() -> TokenStream {
    choose(crate_name("ferry-core").ok(), crate_name("ferry").ok())
}

/// The choice [`detect`] makes, apart from reading `Cargo.toml`.
fn choose(ferry_core: Option<FoundCrate>, ferry: Option<FoundCrate>) -> TokenStream {
    let found = ferry_core
        .map(|found| (found, "ferry_core"))
        .or_else(|| ferry.map(|found| (found, "ferry")));
    let name = match found {
        // `Itself` also covers the crate's doc tests and examples, which see it as an extern
        // crate under its own name; no ferry library code derives `IntegrationEvent` itself.
        Some((FoundCrate::Itself, own)) => own.to_owned(),
        Some((FoundCrate::Name(name), _)) => name,
        None => "ferry_core".to_owned(),
    };
    let ident = format_ident!("{}", name);
    quote!(::#ident)
}

#[cfg(test)]
mod tests {
    use super::{FoundCrate, choose};

    fn path(ferry_core: Option<FoundCrate>, ferry: Option<FoundCrate>) -> String {
        choose(ferry_core, ferry).to_string().replace(' ', "")
    }

    #[test]
    fn prefers_ferry_core_then_the_facade() {
        let name = |n: &str| Some(FoundCrate::Name(n.to_owned()));
        assert_eq!(path(name("ferry_core"), name("ferry")), "::ferry_core");
        assert_eq!(path(None, name("ferry")), "::ferry");
        assert_eq!(path(None, name("my_ferry")), "::my_ferry");
        assert_eq!(path(name("core2"), None), "::core2");
        assert_eq!(path(None, None), "::ferry_core");
        assert_eq!(path(Some(FoundCrate::Itself), None), "::ferry_core");
        assert_eq!(path(None, Some(FoundCrate::Itself)), "::ferry");
    }

    #[test]
    fn this_crate_sees_ferry_core_in_its_dev_dependencies() {
        assert_eq!(super::detect().to_string().replace(' ', ""), "::ferry_core");
    }
}
