//! One module per verb: each takes its parsed arguments, checks what clap
//! could not, does its work, and returns its JSON document.

pub mod backup;
pub mod check;
pub mod keygen;
pub mod list;
pub mod prune;
pub mod restore;
