//! The BER→DER converter of BER-encoded PFX files (deep nesting, indefinite
//! lengths, constructed strings) on arbitrary bytes: an error, never a
//! panic; and what it produces is DER, which converts to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(der) = ibs_envelope::fuzzing::ber_to_der(data) {
        let again = ibs_envelope::fuzzing::ber_to_der(&der).expect("the converter's DER output parses");
        assert_eq!(again, der, "DER is a fixed point of the converter");
    }
});
