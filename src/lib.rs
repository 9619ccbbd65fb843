//! gatehouse: an OAuth 2.0 / OpenID Connect sign-in service and forward-auth gateway.

pub mod access;
pub mod browser;
pub mod config;
pub mod cookie_keys;
pub mod error;
pub mod identity;
pub mod keys;
pub mod log_format;
pub mod log_writer;
pub mod metrics;
pub mod middleware;
pub mod navigation;
pub mod oauth;
pub mod proxy;
pub mod random;
pub mod refresh;
pub mod return_to;
pub mod routes;
pub mod security_headers;
pub mod session;
pub mod signin;
pub mod startup;
pub mod store;
pub mod telemetry;
