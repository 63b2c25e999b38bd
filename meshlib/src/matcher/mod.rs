//! Envoy's request matchers, compiled once and checked per request: the
//! path rules of a `RouteMatch`, `HeaderMatcher` (with `:authority`,
//! `:method`, `:path` and `:scheme` read from the request line),
//! `QueryParameterMatcher`, `type.matcher.v3.StringMatcher` and fractional
//! percentages, with the semantics of Envoy's `route_components.proto` and
//! gRPC's A28. Routing uses them; so will the server's RBAC (gRFC A41),
//! which names the same matchers.
//!
//! Regular expressions match the whole value (Envoy's `safe_regex`) and are
//! compiled here, never per request.

mod fraction;
mod header;
mod path;
mod query;
mod string;

pub(crate) use fraction::fraction_drawn;
pub(crate) use header::{
    HeaderCheck, HeaderRef, RequestHeaders, ResponseHeaderCheck, authority, compile_header,
    compile_response_header,
};
pub(crate) use path::PathRule;
pub(crate) use query::{QueryCheck, first_raw_value};

#[cfg(test)]
mod fuzz;
