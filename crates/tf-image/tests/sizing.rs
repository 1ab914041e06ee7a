//! Sizing of synthetic images of every kind, with a reader that fails the
//! test if sizing ever asks for a byte past the end of the image (a real
//! reader would touch memory that may not be mapped).

use proptest::prelude::*;
use tf_image::fatbin::{self, Compression, EntryKind, FLAG_LZ4, FLAG_ZSTD};
use tf_image::{archive, elf, measure, ptx, step, validate, Found, ImageError, Kind, Step};

/// Follows `step` over `image` as libteleport does over a raw pointer,
/// asserting that it never reads past `image.len()` (except to probe for
/// another archive member, which the reader checks for readability first).
fn size_like_a_reader(image: &[u8]) -> Result<Found, ImageError> {
    let mut have = 0;
    loop {
        match step(&image[..have])? {
            Step::Need(n) => {
                assert!(n > have, "asked for {n} bytes after {have}");
                assert!(
                    n <= image.len(),
                    "read past the end: {n} of {}",
                    image.len()
                );
                have = n;
            }
            Step::Probe { end } => {
                if end + archive::HEADER_LEN <= image.len() {
                    have = end + archive::HEADER_LEN;
                } else {
                    return Ok(Found::Image {
                        kind: Kind::Archive,
                        len: end,
                    });
                }
            }
            Step::UntilNul => {
                let n = image.iter().position(|b| *b == 0).expect("NUL") + 1;
                return Ok(Found::Image {
                    kind: Kind::Ptx,
                    len: n,
                });
            }
            Step::Sized { kind, len } => return Ok(Found::Image { kind, len }),
            Step::Wrapper(w) => return Ok(Found::Wrapper(w)),
        }
    }
}

fn sized(image: &[u8]) -> (Kind, usize) {
    match size_like_a_reader(image).unwrap() {
        Found::Image { kind, len } => (kind, len),
        other => panic!("unexpected {other:?}"),
    }
}

const PTX: &str = "//\n.version 8.5\n.target sm_90\n.address_size 64\n\
    .visible .entry add(\n .param .u64 a,\n .param .u32 n\n)\n{\n ret;\n}\n";

fn ptx_z() -> Vec<u8> {
    let mut v = PTX.as_bytes().to_vec();
    v.push(0);
    v
}

#[test]
fn fatbin_with_ptx_and_elf_entries() {
    let cubin = elf::build(&[(1, b"\x01\x02\x03")], &[]);
    let image = fatbin::build(&[
        (1, 90, 0, &ptx_z(), 0),
        (2, 90, 0, &cubin, 0),
        (2, 80, 0, &cubin[..100], 0),
    ]);
    assert_eq!(sized(&image), (Kind::Fatbin, image.len()));
    let e = fatbin::entries(&image).unwrap();
    assert_eq!(e.len(), 3);
    assert_eq!(
        (e[0].kind, e[0].arch, e[0].compression),
        (EntryKind::Ptx, 90, Compression::None)
    );
    assert!(e[0].payload(&image).starts_with(PTX.as_bytes()));
    assert_eq!(e[1].kind, EntryKind::Elf);
    assert_eq!(&e[1].payload(&image)[..cubin.len()], &cubin[..]);
    assert_eq!(e[2].arch, 80);
    assert_eq!(validate(&image), Ok(Kind::Fatbin));
}

#[test]
fn fatbin_with_compressed_entries_is_sized_from_headers() {
    // Payloads that are not valid LZ4/zstd: sizing must not look inside.
    let lz4 = vec![0xAAu8; 1001];
    let zstd = [&[0x28u8, 0xB5, 0x2F, 0xFD][..], &[7u8; 333]].concat();
    let image = fatbin::build(&[
        (2, 90, FLAG_LZ4, &lz4, 40_000),
        (1, 90, FLAG_ZSTD, &zstd, 90_000),
        (2, 100, FLAG_ZSTD | 0x10, &zstd, 5),
    ]);
    assert_eq!(sized(&image), (Kind::Fatbin, image.len()));
    let e = fatbin::entries(&image).unwrap();
    assert_eq!(e[0].compression, Compression::Lz4);
    assert_eq!(e[0].payload_len, 1001);
    assert_eq!(e[0].decompressed_len, 40_000);
    assert_eq!(e[1].compression, Compression::Zstd);
    assert_eq!(e[1].payload(&image), &zstd[..]);
    assert_eq!(e[2].compression, Compression::Zstd);
    assert_eq!(e[2].arch, 100);
}

#[test]
fn compressed_size_larger_than_stored_size_moves_the_next_entry() {
    // The next entry is at header + max(stored, compressed).
    let mut image = fatbin::build(&[(2, 90, FLAG_LZ4, &[1u8; 64], 100), (1, 90, 0, b"x\0", 0)]);
    let first = 16;
    image[first + 8..first + 16].copy_from_slice(&8u64.to_le_bytes()); // stored < compressed
    let e = fatbin::entries(&image).unwrap();
    assert_eq!(e.len(), 2);
    assert_eq!(e[1].offset, first + 64 + 64);
}

#[test]
fn fatbin_errors() {
    let image = fatbin::build(&[(1, 90, 0, b"abc\0", 0)]);
    // Entry running past the end.
    let mut bad = image.clone();
    bad[16 + 8..16 + 16].copy_from_slice(&4096u64.to_le_bytes());
    assert!(fatbin::entries(&bad).is_err());
    assert!(validate(&bad).is_err());
    // Header size below 16.
    let mut bad = image.clone();
    bad[6] = 8;
    assert!(matches!(step(&bad), Err(ImageError::Malformed { .. })));
    // Absurd size.
    let mut bad = image.clone();
    bad[8..16].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
    assert!(step(&bad).is_err());
    let mut bad = image.clone();
    bad[8..16].copy_from_slice(&(3u64 << 30).to_le_bytes());
    assert!(matches!(step(&bad), Err(ImageError::TooLarge { .. })));
    // Truncated copy.
    assert!(matches!(
        measure(&image[..image.len() - 1]),
        Err(ImageError::Truncated { .. })
    ));
    // Empty fatbin: header only.
    let empty = fatbin::build(&[]);
    assert_eq!(sized(&empty), (Kind::Fatbin, 16));
    assert_eq!(fatbin::entries(&empty).unwrap(), vec![]);
}

#[test]
fn relocatable_container_with_wrapper_magic_is_a_fatbin() {
    let mut image = fatbin::build(&[(1, 90, 0, b"abc\0", 0)]);
    image[0..4].copy_from_slice(&tf_image::WRAPPER_MAGIC.to_le_bytes());
    assert_eq!(sized(&image), (Kind::Fatbin, image.len()));
}

#[test]
fn elf_sections_after_the_header_table_count() {
    // Tables at the end: the section header table decides.
    let image = elf::build(&[(1, &[5u8; 300]), (3, b".text\0.nv.info\0")], &[]);
    assert_eq!(sized(&image), (Kind::Elf, image.len()));
    assert_eq!(validate(&image), Ok(Kind::Elf));
    // A section placed after the table extends the image.
    let mut image = elf::build(&[(1, &[5u8; 16])], &[]);
    let table = image.len() - 2 * 64;
    let extra_off = image.len() as u64;
    image.extend_from_slice(&[9u8; 40]);
    let sec = table + 64 + 24;
    image[sec..sec + 8].copy_from_slice(&extra_off.to_le_bytes());
    image[sec + 8..sec + 16].copy_from_slice(&40u64.to_le_bytes());
    assert_eq!(sized(&image), (Kind::Elf, image.len()));
}

#[test]
fn elf_nobits_sections_take_no_file_space() {
    let image = elf::build(&[(1, &[1u8; 8]), (8, &[0u8; 1 << 20])], &[]);
    assert_eq!(sized(&image), (Kind::Elf, image.len()));
    assert!(image.len() < 4096);
}

#[test]
fn elf_segments_count() {
    let mut image = elf::build(&[(1, &[1u8; 8])], &[(0, 64)]);
    let n = image.len() as u64;
    // A segment reaching past everything else.
    image.extend_from_slice(&[0u8; 100]);
    let ph = 64;
    image[ph + 32..ph + 40].copy_from_slice(&(n + 100).to_le_bytes());
    assert_eq!(sized(&image), (Kind::Elf, image.len()));
}

#[test]
fn elf_extended_section_count() {
    let mut image = elf::build(&[(1, &[1u8; 8]), (1, &[2u8; 8])], &[]);
    let shoff = u64::from_le_bytes(image[40..48].try_into().unwrap()) as usize;
    // e_shnum = 0: the count lives in section 0's sh_size.
    image[60..62].copy_from_slice(&0u16.to_le_bytes());
    image[shoff + 32..shoff + 40].copy_from_slice(&3u64.to_le_bytes());
    assert_eq!(sized(&image), (Kind::Elf, image.len()));
}

#[test]
fn elf_errors() {
    let image = elf::build(&[(1, &[1u8; 8])], &[]);
    let mut bad = image.clone();
    bad[4] = 1;
    assert!(step(&bad).is_err(), "ELF32");
    let mut bad = image.clone();
    bad[5] = 2;
    assert!(step(&bad).is_err(), "big-endian");
    let mut bad = image.clone();
    bad[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(step(&bad).is_err(), "overflowing table");
    let mut bad = image.clone();
    bad[58..60].copy_from_slice(&8u16.to_le_bytes());
    assert!(step(&bad).is_err(), "tiny section entries");
    assert!(matches!(
        measure(&image[..40]),
        Err(ImageError::Truncated { .. })
    ));
}

#[test]
fn archives_end_where_members_stop() {
    let image = archive::build(&[("a.o", b"odd"), ("b.fatbin", &[7u8; 64])]);
    // Followed by unrelated readable bytes that are not a member header.
    let mut mem = image.clone();
    mem.extend_from_slice(&[b'z'; 200]);
    assert_eq!(sized(&mem), (Kind::Archive, image.len()));
    // Followed by nothing readable.
    assert_eq!(sized(&image), (Kind::Archive, image.len()));
    assert_eq!(validate(&image), Ok(Kind::Archive));
    // The odd member is padded to an even length.
    assert_eq!(image.len(), 8 + 60 + 4 + 60 + 64);
    // No members at all.
    assert_eq!(sized(b"!<arch>\n"), (Kind::Archive, 8));
}

#[test]
fn ptx_and_tiny_texts() {
    let t = ptx_z();
    assert_eq!(sized(&t), (Kind::Ptx, t.len()));
    let mut with_tail = t.clone();
    with_tail.extend_from_slice(b"more text after the NUL");
    assert_eq!(sized(&with_tail), (Kind::Ptx, t.len()));
    // Shorter than any magic, and prefixes of magics that end early.
    for s in [&b"\0"[..], b"a\0", b"\x7fE\0", b"!<arch\0", b"\xb1\x43\0"] {
        assert_eq!(sized(s), (Kind::Ptx, s.len()), "{s:?}");
    }
}

#[test]
fn ptx_signatures_follow_the_parameter_alignment_rules() {
    let text = r#"
    // a comment .entry fake(
    .version 8.5
    .target sm_90
    .global .align 4 .b8 table[1024];
    .visible .global .u32 counter;
    .global .f64 coeffs[2][3] = {1.0, 2.0, 3.0, 4.0, 5.0, 6.0};
    .extern .shared .align 16 .b8 smem[];
    .visible .entry vec_add(
        .param .u64 .ptr .global .align 4 vec_add_param_0,
        .param .u64 vec_add_param_1,
        .param .u64 vec_add_param_2,
        .param .u32 vec_add_param_3
    )
    .maxntid 256, 1, 1
    {
        .reg .b64 %rd<4>;
        ld.global.u32 %r1, [counter];
        ret;
    }
    .visible .entry by_value(
        .param .u8 flag,
        .param .align 8 .b8 s[24],
        .param .align 64 .b8 tmap[128],
        .param .f32 /* inline comment */ k,
        .param .b16 h[3]
    )
    { ret; }
    .entry no_params
    { ret; }
    .entry empty_parens()
    { ret; }
    "#;
    let m = ptx::parse(text);
    let p = |o, s| ptx::Param { offset: o, size: s };
    assert_eq!(
        m.entry("vec_add").unwrap().params,
        vec![p(0, 8), p(8, 8), p(16, 8), p(24, 4)]
    );
    assert_eq!(
        m.entry("by_value").unwrap().params,
        vec![p(0, 1), p(8, 24), p(64, 128), p(192, 4), p(196, 6)]
    );
    assert_eq!(m.entry("no_params").unwrap().params, vec![]);
    assert_eq!(m.entry("empty_parens").unwrap().params, vec![]);
    assert!(m.entry("fake").is_none());
    assert_eq!(m.global("table").unwrap().size, 1024);
    assert_eq!(m.global("counter").unwrap().size, 4);
    assert_eq!(m.global("coeffs").unwrap().size, 48);
    assert!(m.global("smem").is_none(), "not a .global");
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400),
                                   magic in 0usize..5) {
        let mut b = bytes;
        let prefixes: [&[u8]; 5] = [
            &tf_image::FATBIN_MAGIC.to_le_bytes(), &tf_image::WRAPPER_MAGIC.to_le_bytes(),
            &tf_image::ELF_MAGIC, &tf_image::AR_MAGIC, b"",
        ];
        let p = prefixes[magic];
        if b.len() >= p.len() {
            b[..p.len()].copy_from_slice(p);
        }
        for n in 0..=b.len() {
            let _ = step(&b[..n]);
        }
        let _ = measure(&b);
        let _ = validate(&b);
        let _ = fatbin::entries(&b);
        let _ = ptx::parse(&String::from_utf8_lossy(&b));
    }

    #[test]
    fn built_fatbins_always_size_exactly(payloads in proptest::collection::vec(
        (1u16..3, 50u32..121, prop_oneof![Just(0u64), Just(FLAG_LZ4), Just(FLAG_ZSTD)],
         proptest::collection::vec(any::<u8>(), 0..300)), 0..6)) {
        let entries: Vec<(u16, u32, u64, &[u8], u64)> =
            payloads.iter().map(|(k, a, f, p)| (*k, *a, *f, &p[..], 7)).collect();
        let image = fatbin::build(&entries);
        prop_assert_eq!(sized(&image), (Kind::Fatbin, image.len()));
        prop_assert_eq!(fatbin::entries(&image).unwrap().len(), payloads.len());
    }

    #[test]
    fn built_elfs_always_size_exactly(sections in proptest::collection::vec(
        (prop_oneof![Just(1u32), Just(3u32), Just(8u32)], proptest::collection::vec(any::<u8>(), 0..200)), 0..8)) {
        let s: Vec<(u32, &[u8])> = sections.iter().map(|(t, d)| (*t, &d[..])).collect();
        let image = elf::build(&s, &[]);
        prop_assert_eq!(sized(&image), (Kind::Elf, image.len()));
    }
}
