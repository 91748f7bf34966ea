//! The real router over real SQLite files: every endpoint's success and
//! failure paths, roles, secrets never leaking, restarts.

mod agents;
mod auth;
mod calls;
mod common;
mod engine;
mod misc;
mod openapi;
mod recording;
mod seeds;
