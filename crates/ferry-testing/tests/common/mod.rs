#![allow(dead_code)]

pub mod flow;
