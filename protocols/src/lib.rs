//! strata's protocol parsers: pure code, bytes in, request and response messages out. No I/O, no
//! clock, no kernel: everything here runs and is fuzzed anywhere.

pub mod dns;
mod framing;
pub mod hpack;
pub mod http1;
pub mod http2;
pub mod kafka;
pub mod message;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod sql;
#[cfg(test)]
mod testkit;
