//! What the agent exposes: metrics (defined in one place), the HTTP
//! endpoints, and the state they read.

pub mod http;
pub mod metrics;
pub mod status;
pub mod webconfig;

pub use metrics::Metrics;
