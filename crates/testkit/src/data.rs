//! Deterministic test data: the same seed gives the same bytes on every
//! machine and every run, so a failing case can be replayed and a recorded
//! size or hash stays valid.
//!
//! Each function is one byte stream that some test or benchmark depends on;
//! they are kept separate (not folded into one "better" generator) because
//! changing a stream would change what those tests measure. What to use:
//!
//! | need | function |
//! | --- | --- |
//! | incompressible bytes from a small seed | [`noise`] |
//! | compressible JSON lines, one per role assignment | [`text`] |
//! | JSON lines with hex ids (the benchmarks' corpus) | [`json_lines`] |
//! | text a deeper zstd match search packs tighter | [`self_similar`] |
//! | a large buffer, fast, with every byte value | [`multiplicative`] |
//! | a tree of small JSON/XML state documents (the many-files benches) | [`infra_document`], [`write_infra_tree`] |
//! | random choices in a property-style loop | [`Xorshift64`] |

/// 2^64 / φ: spreads small seeds (0, 1, 2, …) over the whole state space.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Marsaglia's xorshift64 (shifts 13, 7, 17): tiny, fast, and good enough
/// for test data; not for anything that must be unpredictable.
#[derive(Clone, Debug)]
pub struct Xorshift64(u64);

impl Xorshift64 {
    /// The generator for `seed`: the state is `seed × 2^64/φ`, made odd so
    /// that it is never the all-zero state xorshift cannot leave.
    pub fn new(seed: u64) -> Self {
        Xorshift64(seed.wrapping_mul(GOLDEN) | 1)
    }

    /// The generator whose state is `state` as given (not spread, not made
    /// odd): for streams recorded before [`Xorshift64::new`] existed.
    /// `state` must not be 0.
    pub fn with_state(state: u64) -> Self {
        Xorshift64(state)
    }

    /// The next 64-bit value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value below `n` (`n > 0`; slightly biased, which tests do not mind).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// The next byte: bits 24..32 of the next value.
    pub fn byte(&mut self) -> u8 {
        (self.next_u64() >> 24) as u8
    }

    /// The next `len` bytes, one [`Xorshift64::byte`] each.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }
}

/// `len` incompressible bytes from `seed`: [`Xorshift64::new`]`(seed)`'s
/// bytes. The archive's test vectors were made with this stream.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    Xorshift64::new(seed).bytes(len)
}

/// `len` bytes of compressible text like the JSON documents a backup holds,
/// one role assignment per line, numbered from `seed`.
pub fn text(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = seed;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "{{\"id\":{i},\"role\":\"Contributor\",\"scope\":\"/subscriptions/{}\"}}\n",
                i.wrapping_mul(7919)
            )
            .as_bytes(),
        );
        i = i.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// One line of [`json_lines`]: a role assignment whose object id is `x`.
pub fn json_line(x: u64) -> String {
    format!(
        "{{\"objectId\":\"{x:016x}\",\"role\":\"Reader\",\"scope\":\"/subscriptions/{}\"}}\n",
        x % 977
    )
}

/// `len` bytes of JSON lines with random hex object ids (compressible about
/// 3:1, less than [`text`]): the benchmarks' "text" corpus, from the fixed
/// state `0x9E37_79B9_7F4A_7C15`.
pub fn json_lines(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 128);
    let mut rng = Xorshift64::with_state(GOLDEN);
    while out.len() < len {
        out.extend_from_slice(json_line(rng.next_u64()).as_bytes());
    }
    out.truncate(len);
    out
}

/// `len` bytes of text made of copies of its own earlier bytes at varying
/// distances, with a few literals between: a deeper match search (zstd
/// level 9) packs it far tighter than level 1 does.
pub fn self_similar(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Xorshift64::new(seed);
    let mut next = move |n: u64| rng.below(n) as usize;
    let mut out = b"seed text for the generator ".to_vec();
    while out.len() < len {
        if next(10) < 3 {
            for _ in 0..1 + next(4) {
                out.push(b'a' + next(26) as u8);
            }
        } else {
            let n = 3 + next(28);
            let from = out.len() - 1 - next(out.len().min(8000) as u64);
            for i in 0..n {
                out.push(out[from + i]);
            }
        }
    }
    out.truncate(len);
    out
}

/// `len` bytes (at most 4 GiB), byte `i` being bits `shift..shift + 8` of
/// `i × 2654435761 mod 2^32` (Knuth's multiplicative hash of the index):
/// every byte value, no short period, and cheap enough for hundreds of MiB.
/// The storage tests use `shift` 24, the local-target test 13.
pub fn multiplicative(len: usize, shift: u32) -> Vec<u8> {
    let len = u32::try_from(len).expect("at most 4 GiB");
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> shift) as u8)
        .collect()
}

const FIRST: [&str; 12] = [
    "anna", "ben", "chen", "dana", "eli", "fatima", "goran", "hana", "ivan", "lena", "omar", "petra",
];
const LAST: [&str; 8] = ["meyer", "schmidt", "nowak", "rossi", "garcia", "tanaka", "kim", "silva"];
const DEPTS: [&str; 6] = ["Finance", "Operations", "Engineering", "Sales", "Platform", "Security"];
const ROLES: [&str; 5] = [
    "Owner",
    "Contributor",
    "Reader",
    "User Access Administrator",
    "Network Contributor",
];
const REGIONS: [&str; 4] = ["westeurope", "northeurope", "eastus", "local"];

fn pick<'a>(rng: &mut Xorshift64, from: &[&'a str]) -> &'a str {
    from[rng.below(from.len() as u64) as usize]
}

fn guid(rng: &mut Xorshift64) -> String {
    let (a, b) = (rng.next_u64(), rng.next_u64());
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

fn stamp(rng: &mut Xorshift64) -> String {
    format!(
        "2026-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        1 + rng.below(12),
        1 + rng.below(28),
        rng.below(24),
        rng.below(60),
        rng.below(60)
    )
}

/// Document `i` of a tree of infrastructure state: its file name and bytes.
/// Small JSON/XML documents (users, groups, role assignments, plans,
/// subscriptions; 200 B to 1 KB, mean ~420 B) and, one in ten, a base64
/// secret: 5 000 of them (seed 18) concatenate to 2.1 MB, which zstd -3
/// compresses 4.3×, like real exports. The same
/// `(i, seed)` gives the same document on every machine.
pub fn infra_document(i: u64, seed: u64) -> (String, Vec<u8>) {
    let mut rng = Xorshift64::new(seed.wrapping_mul(1_000_003).wrapping_add(i));
    let (name, body) = match i % 10 {
        0..=2 => {
            let (f, l) = (pick(&mut rng, &FIRST), pick(&mut rng, &LAST));
            let groups: Vec<String> = (0..rng.below(5)).map(|_| format!("\"{}\"", guid(&mut rng))).collect();
            let body = format!(
                "{{\n  \"objectId\": \"{}\",\n  \"objectType\": \"User\",\n  \"userPrincipalName\": \"{f}.{l}{i}@contoso.com\",\n  \"displayName\": \"{f} {l}\",\n  \"department\": \"{}\",\n  \"accountEnabled\": {},\n  \"createdDateTime\": \"{}\",\n  \"memberOf\": [{}]\n}}\n",
                guid(&mut rng),
                pick(&mut rng, &DEPTS),
                rng.below(10) != 0,
                stamp(&mut rng),
                groups.join(", ")
            );
            (format!("user-{i:07}.json"), body)
        }
        3 => {
            let members: Vec<String> = (0..1 + rng.below(12))
                .map(|_| format!("\"{}\"", guid(&mut rng)))
                .collect();
            let body = format!(
                "{{\n  \"objectId\": \"{}\",\n  \"objectType\": \"Group\",\n  \"displayName\": \"grp-{}-{i}\",\n  \"securityEnabled\": true,\n  \"members\": [\n    {}\n  ]\n}}\n",
                guid(&mut rng),
                pick(&mut rng, &DEPTS).to_lowercase(),
                members.join(",\n    ")
            );
            (format!("group-{i:07}.json"), body)
        }
        4..=5 => {
            let sub = guid(&mut rng);
            let body = format!(
                "{{\n  \"id\": \"/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments/{}\",\n  \"type\": \"Microsoft.Authorization/roleAssignments\",\n  \"properties\": {{\n    \"roleDefinitionName\": \"{}\",\n    \"principalId\": \"{}\",\n    \"scope\": \"/subscriptions/{sub}/resourceGroups/rg-{}-{:03}\",\n    \"createdOn\": \"{}\"\n  }}\n}}\n",
                guid(&mut rng),
                pick(&mut rng, &ROLES),
                guid(&mut rng),
                pick(&mut rng, &DEPTS).to_lowercase(),
                rng.below(500),
                stamp(&mut rng)
            );
            (format!("roleassignment-{i:07}.json"), body)
        }
        6..=7 => {
            let quotas: String = (0..2 + rng.below(10))
                .map(|_| {
                    format!(
                        "    <Quota service=\"Microsoft.{}\" limit=\"{}\"/>\n",
                        pick(&mut rng, &["Compute", "Storage", "Network", "KeyVault", "Sql"]),
                        1 + rng.below(100_000)
                    )
                })
                .collect();
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Plan xmlns=\"http://schemas.contoso.com/plans/2026\">\n  <PlanId>{}</PlanId>\n  <Name>plan-{i}</Name>\n  <Region>{}</Region>\n  <Created>{}</Created>\n  <Quotas>\n{quotas}  </Quotas>\n</Plan>\n",
                guid(&mut rng),
                pick(&mut rng, &REGIONS),
                stamp(&mut rng)
            );
            (format!("plan-{i:07}.xml"), body)
        }
        8 => {
            let body = format!(
                "{{\n  \"subscriptionId\": \"{}\",\n  \"displayName\": \"sub-{i}\",\n  \"offerId\": \"{}\",\n  \"state\": \"Enabled\",\n  \"region\": \"{}\",\n  \"createdDate\": \"{}\"\n}}\n",
                guid(&mut rng),
                guid(&mut rng),
                pick(&mut rng, &REGIONS),
                stamp(&mut rng)
            );
            (format!("subscription-{i:07}.json"), body)
        }
        _ => {
            const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let value: String = (0..128).map(|_| B64[rng.below(64) as usize] as char).collect();
            let body = format!(
                "{{\n  \"name\": \"secret-{i}\",\n  \"vault\": \"vault-{}\",\n  \"contentType\": \"application/octet-stream\",\n  \"value\": \"{value}\"\n}}\n",
                rng.below(50)
            );
            (format!("secret-{i:07}.json"), body)
        }
    };
    (name, body.into_bytes())
}

/// Writes `count` [`infra_document`]s of `seed` under `root`, 1 000 per
/// folder (`part-0000`, …); returns the bytes written.
pub fn write_infra_tree(root: &std::path::Path, count: u64, seed: u64) -> std::io::Result<u64> {
    let mut total = 0;
    for i in 0..count {
        let dir = root.join(format!("part-{:04}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&dir)?;
        }
        let (name, body) = infra_document(i, seed);
        std::fs::write(dir.join(name), &body)?;
        total += body.len() as u64;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_what_their_users_recorded() {
        // The first bytes of each stream, so a change to one shows here
        // before it shows as a puzzling failure in another crate's tests.
        assert_eq!(noise(8, 1), [11, 2, 229, 54, 161, 78, 214, 26]);
        assert_eq!(&text(30, 0)[..], b"{\"id\":0,\"role\":\"Contributor\",\"");
        assert_eq!(&json_lines(13)[..], b"{\"objectId\":\"");
        assert_eq!(multiplicative(4, 24), [0, 158, 60, 218]);
        assert_eq!(&self_similar(28, 3)[..], b"seed text for the generator ");
        assert_eq!(noise(1000, 7), noise(1000, 7));
        assert_ne!(noise(1000, 7), noise(1000, 8));
        assert_eq!(infra_document(12, 1), infra_document(12, 1));
        assert_ne!(infra_document(12, 1), infra_document(12, 2));
        assert!(infra_document(0, 1).0.starts_with("user-"));
    }
}
