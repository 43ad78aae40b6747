//! Keyless archive parsing on arbitrary bytes: `inspect` (header + footer) and
//! the signature check, and the header, footer, index and root decoders
//! directly, both format versions (the index and root decoders are only
//! reachable after authentication otherwise). An error, never a panic.
#![no_main]

use futures::executor::block_on;
use ibs_archive::fuzzing::format::{FOOTER_LEN, Index, MIN_FRAME_SIZE};
use ibs_archive::fuzzing::v2::{FOOTER_LEN_V2, FooterV2, Root};
use ibs_archive::{Footer, Header, check_signature, inspect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = data.to_vec();
    if let Ok(info) = block_on(inspect(&bytes)) {
        let _ = info.signer_fingerprint();
        let _ = block_on(check_signature(&bytes, &info));
    }
    let _ = Header::decode(data);
    if data.len() >= FOOTER_LEN {
        let _ = Footer::decode(&data[data.len() - FOOTER_LEN..], data.len() as u64);
    }
    if data.len() >= FOOTER_LEN_V2 {
        let _ = FooterV2::decode(&data[data.len() - FOOTER_LEN_V2..], data.len() as u64);
    }
    if let Ok(root) = Root::decode(data, MIN_FRAME_SIZE) {
        let _ = root.layout(457, data.len() as u64);
    }
    if let Ok(index) = Index::decode(data, MIN_FRAME_SIZE) {
        for e in &index.entries {
            let _ = e.check_names();
            let _ = e.frames(MIN_FRAME_SIZE);
        }
        let _ = index.frame_offsets(100);
    }
});
