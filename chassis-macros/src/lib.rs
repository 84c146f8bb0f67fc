//! Derive macros of the service chassis. Use them through `chassis-domain`
//! (`chassis_domain::Aggregate`), which re-exports them next to the traits
//! they implement; the README lists every attribute.
//!
//! `#[derive(Aggregate)]` writes `Entity` (the identity is the field named
//! `id`, or the one marked `#[aggregate(id)]`) and `AggregateRoot` (the
//! collection, the domain event type, the `Changes` field, optionally the
//! index entries).

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, LitStr, Path, Type, parse_macro_input};

/// Implements `chassis_domain::Entity` and `chassis_domain::AggregateRoot`.
///
/// ```ignore
/// #[derive(Serialize, Deserialize, Aggregate)]
/// #[aggregate(collection = "items", events = ItemEvent, index = index)]
/// struct Item { id: Uuid, #[serde(skip)] changes: Changes<ItemEvent> }
/// ```
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match aggregate(&input) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

/// What `#[aggregate(..)]` on the struct says.
struct StructAttributes {
    collection: Option<LitStr>,
    events: Option<Type>,
    index: Option<Path>,
}

fn struct_attributes(input: &DeriveInput) -> syn::Result<StructAttributes> {
    let mut found = StructAttributes {
        collection: None,
        events: None,
        index: None,
    };
    for attribute in input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("aggregate"))
    {
        attribute.parse_nested_meta(|meta| {
            if meta.path.is_ident("collection") {
                let value: LitStr = meta.value()?.parse()?;
                let valid = !value.value().is_empty()
                    && value
                        .value()
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !valid {
                    return Err(meta.error("collection: expected a name of [a-z0-9_]+"));
                }
                found.collection = Some(value);
            } else if meta.path.is_ident("events") {
                found.events = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("index") {
                found.index = Some(meta.value()?.parse()?);
            } else {
                return Err(meta.error("expected `collection`, `events` or `index`"));
            }
            Ok(())
        })?;
    }
    Ok(found)
}

fn aggregate(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let attributes = struct_attributes(input)?;
    let Some(collection) = attributes.collection else {
        return Err(syn::Error::new(
            input.ident.span(),
            "#[derive(Aggregate)] needs #[aggregate(collection = \"...\")]",
        ));
    };
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            input.ident.span(),
            "#[derive(Aggregate)] applies to structs with named fields",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new(
            data.fields.span(),
            "#[derive(Aggregate)] applies to structs with named fields",
        ));
    };

    let mut id = None;
    for field in &fields.named {
        let mut marked = false;
        for attribute in field
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("aggregate"))
        {
            attribute.parse_nested_meta(|meta| {
                if meta.path.is_ident("id") {
                    marked = true;
                    Ok(())
                } else {
                    Err(meta.error("expected `id`"))
                }
            })?;
        }
        if marked {
            if id.is_some() {
                return Err(syn::Error::new(
                    field.span(),
                    "only one field may be #[aggregate(id)]",
                ));
            }
            id = Some(field);
        }
    }
    let id = match id {
        Some(field) => field,
        None => fields
            .named
            .iter()
            .find(|f| f.ident.as_ref().is_some_and(|i| i == "id"))
            .ok_or_else(|| {
                syn::Error::new(
                    input.ident.span(),
                    "#[derive(Aggregate)] needs a field named `id` or one marked #[aggregate(id)]",
                )
            })?,
    };
    let changes = fields
        .named
        .iter()
        .find(|f| is_changes(&f.ty))
        .ok_or_else(|| {
            syn::Error::new(
                input.ident.span(),
                "#[derive(Aggregate)] needs a field of type `Changes<..>` (keep it #[serde(skip)])",
            )
        })?;

    let name = &input.ident;
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    let id_field = id.ident.as_ref().expect("named field");
    let id_type = &id.ty;
    let changes_field = changes.ident.as_ref().expect("named field");
    let events = attributes
        .events
        .map(|t| quote!(#t))
        .unwrap_or_else(|| quote!(()));
    let index = attributes.index.map(|method| {
        quote! {
            fn index_entries(&self) -> ::std::vec::Vec<::chassis_domain::IndexEntry> {
                self.#method()
            }
        }
    });
    let domain = Ident::new("chassis_domain", Span::call_site());
    Ok(quote! {
        impl #impl_generics ::#domain::Entity for #name #type_generics #where_clause {
            type Id = #id_type;

            fn id(&self) -> &#id_type {
                &self.#id_field
            }
        }

        impl #impl_generics ::#domain::AggregateRoot for #name #type_generics #where_clause {
            const COLLECTION: &'static str = #collection;
            type DomainEvent = #events;

            fn changes(&self) -> &::#domain::Changes<#events> {
                &self.#changes_field
            }

            fn changes_mut(&mut self) -> &mut ::#domain::Changes<#events> {
                &mut self.#changes_field
            }

            #index
        }
    })
}

/// Whether a field's type is `Changes<..>` (by its last path segment).
fn is_changes(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "Changes"),
        _ => false,
    }
}
