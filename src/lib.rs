//! keygate: a token-validating ingress proxy and sidecar for APIs published the WSO2 API Manager
//! way, with an external key manager such as Asgardeo.
//!
//! One request:
//!
//! ```text
//! client ─▶ listener (Pingora)
//!   1 route      catalog::route: API by context[/version] (longest prefix), resource by verb +
//!                template (literal > {param} > /*)        ─▶ 404 / 403 900906
//!   2 auth type  auth_type None ─▶ 6 (anonymous Permit)
//!   3 extract    auth::bearer: the API's header, "Bearer <token>"  ─▶ 401 900902
//!   4 classify   auth::jwt: three segments, alg not none/HMAC; unverified iss ─▶ key manager
//!   5 validate   verdict cache (SHA-256 of the token) ─▶ JWKS verify (alg pinned by the key,
//!                exp/nbf/iss/aud, skew)                    ─▶ 401 900901 / 503 900900
//!   6 authorize  authz: resource scopes, any-of, every request ─▶ Permit | 403 900910
//!   7 enrich     enrich: strip client X-Auth-*, add ours, drop Authorization
//!   8 upstream   upstream: path rewrite, timeouts, streaming both ways ─▶ 502 / 504
//! beside it: admin (/metrics /healthz /readyz), background JWKS refreshers
//! ```
//!
//! `gateway` is the only module that knows Pingora's phases; `error` is the only place that
//! turns refusals into HTTP.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![warn(missing_docs)]

pub mod admin;
pub mod admission;
pub mod auth;
pub mod authz;
pub mod catalog;
pub mod config;
pub mod control;
pub mod demo;
pub mod devidp;
pub mod echo;
pub mod enrich;
pub mod error;
pub mod gateway;
pub mod loopback;
pub mod metrics;
pub mod reload;
pub mod runtime;
pub mod server;
pub mod upstream;
