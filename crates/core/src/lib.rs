//! The service core shared by `rtcd` and `calls-offloader`.
//!
//! Nothing here knows about RTC or jobs: each daemon brings its own config sections, routes and
//! state, and uses these pieces for everything the two have in common.
//!
//! - [`daemon`]: the shared `main`: flags, config, logging, runtime, exit codes.
//! - [`config`]: TOML file + environment overrides with Go `envconfig` names, one-line errors.
//! - [`logging`]: console and rotating-file logging per the `[logger]` section.
//! - [`store`]: the embedded ACID key-value store (redb) behind client registrations and jobs.
//! - [`auth`]: client registration, bcrypt keys, Basic/Bearer auth, bearer sessions, rate limit.
//! - [`auth_api`]: the `/register`, `/unregister` and `/login` handlers both daemons serve.
//! - [`http`]: serving (plain or TLS, graceful stop) and Go-compatible response helpers.
//! - [`metrics`]: the Prometheus registry and process metrics.
//! - [`buildinfo`] and [`ids`]: version reporting and random identifiers.

pub mod auth;
pub mod auth_api;
pub mod buildinfo;
pub mod config;
pub mod daemon;
pub mod http;
pub mod ids;
pub mod logging;
pub mod metrics;
pub mod store;
