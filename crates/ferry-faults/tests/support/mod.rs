//! The fault suite's harness.
#![allow(dead_code)]

pub mod case;
pub mod ordered;
pub mod report;
pub mod services;
pub mod worker;
