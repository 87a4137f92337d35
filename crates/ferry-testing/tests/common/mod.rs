#![allow(dead_code)]

pub mod events;
pub mod flow;
