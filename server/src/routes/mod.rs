//! The HTTP routes of docs/HTTP.md, one module per resource.

pub mod ads;
pub mod health;
pub mod search;
