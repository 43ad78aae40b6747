//! Compiles `src/progress.rs` on its own and runs its unit tests, until the
//! command declares the module (`mod progress;` in `main.rs`); then this
//! file can go: the same tests run with the binary's.
#![allow(dead_code, missing_docs)]

#[path = "../src/progress.rs"]
mod progress;
