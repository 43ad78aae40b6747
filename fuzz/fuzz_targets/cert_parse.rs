//! `.cer` parsing (DER and PEM) on arbitrary bytes: an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cert) = ibs_envelope::Certificate::parse(data) {
        assert!(cert.key_bits() >= ibs_envelope::MIN_RSA_BITS);
        let _ = cert.thumbprint().to_string();
    }
});
