//! The sans-IO core: encode and decode every part of an archive on byte slices.
//!
//! Nothing here performs IO or spawns threads. The writer and the reader are
//! thin adapters around it; another runtime, or a tool in another language
//! following `FORMAT.md`, can do the same. Every decoder takes untrusted bytes
//! and returns an [`Error`](crate::Error), never a panic.
//!
//! One file per part: [`id`] (the archive id), [`keys`] (the keys derived
//! from the file key; sealing and opening chunks), [`header`], [`footer`]
//! (version 1), [`index`] (version 1) and [`names`] (the rules for source
//! names and entry paths). Version 2's root, pieces and footer are in
//! `v2.rs`; which chunks to compress, and how hard, is the writer's choice
//! (`writer/compressor.rs`).

mod footer;
mod header;
mod id;
mod index;
mod keys;
mod names;

use ibs_envelope::TAG_LEN;

pub use footer::{FOOTER_LEN, FOOTER_MAGIC, Footer, MAX_INDEX_LEN, MAX_SEALED_INDEX_LEN};
pub use header::{
    HEADER_MAC_LEN, HEADER_PREFIX_LEN, Header, HeaderFields, MAGIC, MAX_HEADER_LEN, MAX_LABEL_KEY_LEN,
    MAX_LABEL_VALUE_LEN, MAX_LABELS, MAX_PRODUCER_VERSION_LEN, MAX_RECIPIENTS,
};
pub use id::{ARCHIVE_ID_LEN, ArchiveId};
pub use index::{Index, open_index};
pub use keys::{ArchiveKeys, ENCODING_STORED, ENCODING_ZSTD};
pub use names::{MAX_MODE, MAX_PATH_LEN, MAX_SOURCE_LEN, check_entry_path, check_source_name};

/// The format version this library writes (it reads this and [`FORMAT_VERSION_1`]).
pub const FORMAT_VERSION: u16 = 2;
/// The first format version, still read.
pub const FORMAT_VERSION_1: u16 = 1;
/// Smallest allowed frame size.
pub const MIN_FRAME_SIZE: u32 = 4 << 10;
/// Largest allowed frame size (bounds a reader's memory).
pub const MAX_FRAME_SIZE: u32 = 16 << 20;
/// The default frame size: 1 MiB of plaintext.
pub const DEFAULT_FRAME_SIZE: u32 = 1 << 20;
/// Shortest possible sealed frame: encoding byte, one byte of data, tag.
pub const MIN_SEALED_FRAME_LEN: usize = 1 + 1 + TAG_LEN;
/// Compression algorithm byte for zstd (the only one defined).
pub const COMPRESSION_ZSTD: u8 = 1;
