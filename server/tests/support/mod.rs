//! Helpers shared by some end-to-end tests (each test binary that uses them also declares
//! `mod e2e_common;`, which starts and drives the real binary):
//!
//! - `script`: the fixture command script and its golden journal tip;
//! - `aws`: a DynamoDB server for the AWS backend's end-to-end tests (or a loud skip).

// Each test binary uses a different part.
#![allow(dead_code)]

pub mod aws;
pub mod script;
