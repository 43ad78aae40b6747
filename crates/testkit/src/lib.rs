//! What the tests and benchmarks of the ibs workspace share: deterministic
//! data, fixture key pairs, real servers as child processes, a runner for
//! the `ibs` binary, and the fidelity tree. Not published
//! (`publish = false`): a dev-dependency only.
//!
//! | module | for |
//! | --- | --- |
//! | [`data`] | deterministic bytes and text from a seed (noise, JSON lines, self-similar text) |
//! | [`keys`] | operator key pairs made by `ibs keygen`'s generator, once per test binary |
//! | [`server`] | a child-process server: free port, readiness poll, freeze/thaw/stop, killed on drop |
//! | `samba` | a real `smbd` on loopback (feature `samba`) |
//! | `azurite`, `moto` | Azurite (Azure Blob) and moto (S3) on loopback (feature `object-store`) |
//! | [`cli`] | running the `ibs` binary and asserting how it exited |
//! | [`tree`] | a folder with every kind of entry and metadata, and the comparison of a restored copy |
//! | [`is_root`] | whether a test can do what needs root (tmpfs, owners), or must skip that part |
//!
//! # Why the servers live here
//!
//! The Samba, Azurite and moto harnesses used to be `testing` features of
//! `ibs-storage-smb` and `ibs-storage-object`. They are here instead so
//! that those crates carry no test code and no test-only dependencies
//! (tempfile, an HMAC signer for Azurite's container call) and stay
//! publishable: a publishable crate cannot have even an optional dependency
//! on this unpublished one, while this crate may depend on them. The
//! backends' tests take this crate as a dev-dependency (a dev-dependency
//! cycle, which Cargo allows: the integration tests and this crate link one
//! copy of the backend). Features keep the servers' dependencies out of
//! tests that need only data: `samba` pulls in libsmbclient through
//! `ibs-storage-smb`, `object-store` an HTTP client through
//! `ibs-storage-object`.
//!
//! Every server binds 127.0.0.1 only, waits for readiness a bounded time,
//! and is killed when dropped. A test that cannot run here says so through
//! `ibs_storage::conformance::skip_or_fail` (a loud skip, a failure under
//! `CI=true`); the harnesses return errors and leave that choice to tests.
//!
//! # Example
//!
//! ```
//! use ibs_testkit::data;
//!
//! // The same seed, the same bytes: a failing case replays from its seed.
//! assert_eq!(data::noise(1 << 10, 7), data::noise(1 << 10, 7));
//! let json = data::text(4096, 0);
//! assert!(json.starts_with(b"{\"id\":0,"));
//! let mut rng = data::Xorshift64::new(42);
//! assert!(rng.below(6) < 6);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test kit: a broken expectation is a failed test, said where it broke"
)]

pub mod cli;
pub mod data;
pub mod keys;
pub mod server;
pub mod tree;

#[cfg(feature = "object-store")]
pub mod azurite;
#[cfg(feature = "object-store")]
pub mod moto;
#[cfg(feature = "samba")]
pub mod samba;

/// Whether the process runs as root (effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// An HTTP client for the emulators' setup calls; installs rustls's *ring*
/// provider first unless one is installed (as `ibs-storage-object` does).
#[cfg(feature = "object-store")]
fn http_client() -> reqwest::Client {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    reqwest::Client::new()
}
