//! The `strata` command line: one module per command, plus what several share (arguments, the
//! BTF decision, the tier order).

pub mod args;
pub mod btf;
pub mod compat;
pub mod kmod;
pub mod replay;
pub mod run;
pub mod tiers;
