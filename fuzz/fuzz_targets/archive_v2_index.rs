//! The version 2 index decoders on arbitrary bytes (FORMAT.md §14.4-14.6):
//! the root (and the layout it implies), an index piece (decoded against
//! the record it implies, so every check of the decoder is reached) with
//! the streaming order, tree and hard-link checks a reader makes, and the
//! footer. These are reachable only after authentication otherwise. An
//! error, never a panic; what decodes encodes back to the same bytes.
#![no_main]

use ibs_archive::fuzzing::format::MIN_FRAME_SIZE;
use ibs_archive::fuzzing::v2::{FOOTER_LEN_V2, FooterV2, Root, decode_piece, encode_entry};
use ibs_archive::fuzzing::{check_piece, piece_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sources: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    if let Ok(root) = Root::decode(data, MIN_FRAME_SIZE) {
        assert_eq!(root.encode(), data, "a decoded root encodes back to its bytes");
        let end = root
            .pieces
            .last()
            .map_or(0, |p| p.offset.saturating_add(u64::from(p.sealed_len)));
        let _ = root.layout(457, end);
        for i in 0..root.pieces.len() {
            let _ = root.piece_counter(i);
        }
    }
    if let Some((record, len)) = piece_record(data, &sources)
        && let Ok(entries) = decode_piece(data, 0, &record, len, &sources)
    {
        let mut raw = (entries.len() as u32).to_le_bytes().to_vec();
        for (s, e) in &entries {
            encode_entry(&mut raw, e, *s);
        }
        assert_eq!(raw, data, "a decoded piece encodes back to its bytes");
    }
    let _ = check_piece(data, &sources);
    if data.len() >= FOOTER_LEN_V2 {
        if let Ok(f) = FooterV2::decode(&data[data.len() - FOOTER_LEN_V2..], data.len() as u64) {
            assert_eq!(&f.encode()[..], &data[data.len() - FOOTER_LEN_V2..]);
        }
    }
});
