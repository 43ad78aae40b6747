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
            // `scheme://user:SECRET@host/...`: the secret (what follows the
            // last ':' of the userinfo, the part of the authority before its
            // '@') is never echoed — unless the same text also stands
            // elsewhere, which is no credential.
            let Some((scheme, rest)) = text.split_once("://") else {
                return;
            };
            if !["smb", "az", "s3"].contains(&scheme.to_ascii_lowercase().as_str()) {
                return;
            }
            let authority = rest.split(['/', '\\']).next().unwrap_or_default();
            let Some((userinfo, host)) = authority.rsplit_once('@') else {
                return;
            };
            let secret = userinfo.rsplit(':').next().unwrap_or_default();
            // What follows the '@' is shown as it is and, in `Debug`, escaped
            // (a NUL becomes `\0`, whose `0` can join digits around it).
            let after = &rest[authority.len() - host.len()..];
            let elsewhere = format!("{scheme} {after} {after:?}").contains(secret);
            // (A secret holding '@' is no password of this shape: the
            // userinfo ends at its last '@'.)
            if secret.len() >= 6 && !secret.contains('@') && !elsewhere {
                let shown = format!("{e} {e:?}");
                assert!(!shown.contains(secret), "{secret:?} echoed in {shown}");
            }
        }
    }
});
