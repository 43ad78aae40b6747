//! `.pfx` parsing on arbitrary bytes, with the fixtures' password and an empty
//! one: an error, never a panic.
#![no_main]

use ibs_envelope::{Identity, Password};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for password in ["password", ""] {
        let _ = Identity::from_pkcs12(data, &Password::new(password));
    }
});
