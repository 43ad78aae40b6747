//! Property tests: wrap/unwrap and the chunked AEAD under any input and any damage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::OnceLock;

use ibs_envelope::fuzzing::{StreamOpener, StreamSealer, open_message, seal_message};
use ibs_envelope::keygen::{KeygenOptions, generate};
use ibs_envelope::{
    COMMITMENT_LEN, Error, FileKey, Identity, Password, PayloadKey, SALT_LEN, TAG_LEN, unwrap_file_key, unwrap_with,
    wrap_file_key,
};
use proptest::prelude::*;

fn identity() -> &'static Identity {
    static ID: OnceLock<Identity> = OnceLock::new();
    ID.get_or_init(|| {
        let pair = generate(&KeygenOptions::new("proptest", 1_700_000_000), &Password::new("p")).unwrap();
        Identity::from_pkcs12(&pair.pfx, &Password::new("p")).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn wrap_unwrap_round_trips_and_detects_any_flip(key in any::<[u8; 32]>(), bit in 0usize..2048) {
        let id = identity();
        let file_key = FileKey::from_bytes(key);
        let stanzas = wrap_file_key(&file_key, &[id.certificate(), id.certificate()]).unwrap();
        prop_assert_eq!(stanzas.len(), 2);
        // OAEP is randomised: two wraps of one key differ.
        prop_assert_ne!(&stanzas[0].wrapped_key, &stanzas[1].wrapped_key);
        prop_assert_eq!(unwrap_file_key(&stanzas, &[id]).unwrap(), file_key);
        let mut damaged = stanzas[0].wrapped_key.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(matches!(unwrap_with(id, &damaged), Err(Error::DecryptionFailed)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_message_round_trips(msg in proptest::collection::vec(any::<u8>(), 0..3000), chunk in 1usize..700, aad in proptest::collection::vec(any::<u8>(), 0..40)) {
        let key = FileKey::from_bytes([7; 32]);
        let sealed = seal_message(&key, &aad, &msg, chunk).unwrap();
        let chunks = msg.len().div_ceil(chunk).max(1);
        prop_assert_eq!(sealed.len(), SALT_LEN + COMMITMENT_LEN + msg.len() + chunks * TAG_LEN);
        let opened = open_message(&key, &aad, &sealed, chunk).unwrap();
        prop_assert_eq!(opened.as_slice(), &msg[..]);
    }

    #[test]
    fn any_single_bit_flip_is_detected(msg in proptest::collection::vec(any::<u8>(), 0..600), chunk in 1usize..200, pos in any::<proptest::sample::Index>(), bit in 0u8..8) {
        let key = FileKey::from_bytes([9; 32]);
        let mut sealed = seal_message(&key, b"header", &msg, chunk).unwrap();
        let i = pos.index(sealed.len());
        sealed[i] ^= 1 << bit;
        prop_assert!(open_message(&key, b"header", &sealed, chunk).is_err());
    }

    #[test]
    fn any_truncation_or_extension_is_detected(msg in proptest::collection::vec(any::<u8>(), 0..600), chunk in 1usize..200, cut in any::<proptest::sample::Index>(), extra in proptest::collection::vec(any::<u8>(), 1..100)) {
        let key = FileKey::from_bytes([1; 32]);
        let sealed = seal_message(&key, b"", &msg, chunk).unwrap();
        let len = cut.index(sealed.len());
        prop_assert!(open_message(&key, b"", &sealed[..len], chunk).is_err());
        let mut longer = sealed.clone();
        longer.extend_from_slice(&extra);
        prop_assert!(open_message(&key, b"", &longer, chunk).is_err());
    }

    #[test]
    fn wrong_key_or_aad_fails(msg in proptest::collection::vec(any::<u8>(), 0..300), other in any::<[u8; 32]>()) {
        prop_assume!(other != [3; 32]);
        let key = FileKey::from_bytes([3; 32]);
        let sealed = seal_message(&key, b"a", &msg, 64).unwrap();
        prop_assert!(matches!(open_message(&FileKey::from_bytes(other), b"a", &sealed, 64), Err(Error::DecryptionFailed)));
        prop_assert!(open_message(&key, b"b", &sealed, 64).is_err());
    }
}

fn sealed_chunks(key: &PayloadKey, n: usize) -> Vec<Vec<u8>> {
    let mut sealer = StreamSealer::new(key);
    (0..n)
        .map(|i| {
            let mut buf = format!("chunk {i}").into_bytes();
            sealer.seal_next(i + 1 == n, b"", &mut buf).unwrap();
            buf
        })
        .collect()
}

#[test]
fn reorder_duplicate_and_drop_are_detected() {
    let key = PayloadKey::derive(&FileKey::from_bytes([5; 32]), &[6; SALT_LEN]);
    let chunks = sealed_chunks(&key, 4);
    let open_all = |order: &[usize]| -> Result<(), Error> {
        let mut opener = StreamOpener::new(&key);
        for (n, &i) in order.iter().enumerate() {
            opener.open_next(n + 1 == order.len(), b"", &mut chunks[i].clone())?;
        }
        opener.finish()
    };
    open_all(&[0, 1, 2, 3]).unwrap();
    assert!(matches!(open_all(&[1, 0, 2, 3]), Err(Error::DecryptionFailed)));
    assert!(matches!(open_all(&[0, 0, 1, 2, 3]), Err(Error::DecryptionFailed)));
    assert!(matches!(open_all(&[0, 1, 2]), Err(Error::Truncated)));
    assert!(open_all(&[0, 1, 3]).is_err());

    // The final chunk followed by more is trailing data.
    let mut opener = StreamOpener::new(&key);
    for c in &chunks[..3] {
        opener.open_next(false, b"", &mut c.clone()).unwrap();
    }
    assert!(matches!(
        opener.open_next(false, b"", &mut chunks[3].clone()),
        Err(Error::TrailingData)
    ));

    // An opener that never saw its final chunk reports truncation.
    let mut opener = StreamOpener::new(&key);
    opener.open_next(false, b"", &mut chunks[0].clone()).unwrap();
    assert!(matches!(opener.finish(), Err(Error::Truncated)));
}

#[test]
fn chunk_n_opens_without_the_chunks_before_it() {
    let key = PayloadKey::derive(&FileKey::from_bytes([8; 32]), &[2; SALT_LEN]);
    let chunks = sealed_chunks(&key, 100);
    let mut c = chunks[57].clone();
    key.open_chunk(57, false, b"", &mut c).unwrap();
    assert_eq!(c, b"chunk 57");
    let mut last = chunks[99].clone();
    key.open_chunk(99, true, b"", &mut last).unwrap();
    assert_eq!(last, b"chunk 99");
    assert!(key.open_chunk(58, false, b"", &mut chunks[57].clone()).is_err());
}

#[test]
fn key_commitment_differs_per_key_and_salt() {
    let a = PayloadKey::derive(&FileKey::from_bytes([1; 32]), &[0; SALT_LEN]);
    let b = PayloadKey::derive(&FileKey::from_bytes([2; 32]), &[0; SALT_LEN]);
    let c = PayloadKey::derive(&FileKey::from_bytes([1; 32]), &[1; SALT_LEN]);
    assert_ne!(a.commitment(), b.commitment());
    assert_ne!(a.commitment(), c.commitment());
    a.verify_commitment(a.commitment()).unwrap();
    assert!(b.verify_commitment(a.commitment()).is_err());
    assert!(a.verify_commitment(&a.commitment()[..31]).is_err());
}

/// Whether `text` shows bytes the way a derived `Debug` would: a list of
/// numbers (`[171, 171, …]`) or a run of hex digits.
fn shows_bytes(text: &str) -> bool {
    let list = text
        .split(|c: char| !(c.is_ascii_digit() || c == ',' || c == ' '))
        .any(|run| {
            run.split(", ")
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .count()
                >= 4
        });
    let hex = text.split(|c: char| !c.is_ascii_hexdigit()).any(|run| run.len() >= 16);
    list || hex
}

#[test]
fn secrets_are_redacted_in_debug() {
    let key = FileKey::from_bytes([0xab; 32]);
    let payload = PayloadKey::derive(&key, &[0; SALT_LEN]);
    for (what, shown) in [
        ("file key", format!("{key:?}")),
        ("payload key", format!("{payload:?}")),
        ("password", format!("{:?}", Password::new("hunter2-secret"))),
        // Its certificate's thumbprint is public; the rest must not show bytes.
        (
            "identity",
            format!("{:?}", identity()).replace(&identity().certificate().thumbprint().to_string(), "T"),
        ),
    ] {
        assert!(!shows_bytes(&shown), "{what} shows bytes: {shown}");
        assert!(!shown.contains("hunter2"), "{what}: {shown}");
        // A private key's parts are hundreds of digits: nothing long is shown.
        assert!(shown.len() < 300, "{what}: {shown}");
    }
    // The check itself: what a derived Debug would print is caught.
    assert!(shows_bytes(&format!("{:?}", [0xabu8; 32])));
    assert!(shows_bytes(&format!("{:?}", [0x17u8; 32])));
    assert!(shows_bytes("ab".repeat(16).as_str()));
}
