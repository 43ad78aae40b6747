//! Keyless archive parsing on arbitrary bytes: `inspect` (header + footer), and
//! the header, footer and index decoders directly (the index decoder is only
//! reachable after authentication otherwise). An error, never a panic.
#![no_main]

use futures::executor::block_on;
use ibs_archive::format::{FOOTER_LEN, MIN_FRAME_SIZE};
use ibs_archive::{Footer, Header, Index, inspect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = block_on(inspect(&data.to_vec()));
    let _ = Header::decode(data);
    if data.len() >= FOOTER_LEN {
        let _ = Footer::decode(&data[data.len() - FOOTER_LEN..], data.len() as u64);
    }
    if let Ok(index) = Index::decode(data, MIN_FRAME_SIZE) {
        for e in &index.entries {
            let _ = e.check_names();
            let _ = e.frames(MIN_FRAME_SIZE);
        }
        let _ = index.frame_offsets(100);
    }
});
