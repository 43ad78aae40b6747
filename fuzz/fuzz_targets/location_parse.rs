//! Storage locations (UNC, smb://, az://, s3://, local paths) on arbitrary
//! text: an error, never a panic; what parses prints as text that parses
//! back to it; and an error never repeats what stood before an `@` in the
//! server part (credentials).
#![no_main]

use ibs_storage::Location;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Location::parse(text) {
        Ok(location) => {
            let shown = location.to_string();
            let again = Location::parse(&shown).expect("a location prints as text that parses");
            assert_eq!(again, location, "{text:?} -> {shown:?}");
        }
        Err(e) => {
            // `scheme://user:SECRET@host/...`: the secret is never echoed.
            if let Some((before, _)) = text.split_once('@') {
                if let Some(secret) = before.rsplit([':', '/', '\\']).next() {
                    if secret.len() >= 6 && !secret.contains(['/', '\\', '@']) && before.contains("://") {
                        let shown = format!("{e} {e:?}");
                        assert!(!shown.contains(secret), "{secret:?} echoed in {shown}");
                    }
                }
            }
        }
    }
});
