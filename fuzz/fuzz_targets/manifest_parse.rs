//! Backup manifest parsing on arbitrary bytes: an error, never a panic; what
//! parses re-encodes to something that parses to the same manifest.
#![no_main]

use ibs_repository::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data) {
        let again = Manifest::parse(&m.encode()).expect("a parsed manifest re-encodes");
        assert_eq!(again, m);
    }
});
