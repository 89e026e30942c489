//! Integration tests over real loopback sockets: the proxy in-process on port 0, the embedded
//! identity provider and an echo upstream on port 0. One test binary, one link.

mod common;
mod config;
mod demo;
mod envoy;
mod introspection;
mod jwks;
mod jwt;
mod ops;
mod sync;
mod upstream;
mod wso2;
