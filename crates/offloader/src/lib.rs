//! `calls-offloader`: the job service of Mattermost Calls.
//!
//! Where things go:
//! - [`job`]: the job model, validation and `input_data` → environment rules (no I/O).
//! - [`backend`]: where a job runs: [`backend::docker`] (Docker Engine) or
//!   [`backend::kubernetes`] (Kubernetes Jobs).
pub mod backend;
pub mod job;
