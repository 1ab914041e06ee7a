//! The integrity check of export table `d4082055` (slot 1).
//!
//! cudart asks the driver for a 16-byte answer to a challenge (a protocol
//! revision and the current time) and computes the same answer itself; when
//! they differ it fails with error 103, "integrity checks failed". What is
//! hashed binds the answer to this very process and to what the driver told
//! cudart: the driver version, the process and thread ids, the addresses of
//! the cudart-interface table, of the integrity table and of the function in
//! its slot 1, the challenge, and per device the UUID and PCI domain, bus and
//! device numbers. So the answer must be computed here, in the client, with
//! the addresses of *our* tables and the values *we* report for the devices
//! and the driver version, never forwarded from the worker's driver.
//!
//! The keyed hash is HMAC (RFC 2104) over MD2 (RFC 1319, with its published
//! checksum erratum: the checksum byte is XORed in, not assigned): MD2's
//! 16-byte block makes the 16-byte key exactly one block of ipad/opad. The
//! key, the field layout, and the fixed answers of revisions 0 and 1 were
//! established by public reverse engineering (ZLUDA's dark-API work); the
//! unit tests below check this implementation against the RFC's vectors,
//! against intermediate states published with that work, and against eleven
//! answers of the real driver 580 recorded by the GPU check
//! (`tests/gpu/procaddr/probe_tables.c`), which also showed that the thread
//! id hashed is the low 32 bits of `pthread_self()`.

use std::ffi::c_uint;

use tf_protocol::status::cu;

use crate::cuda::{guard, inventory, session};

/// The HMAC key.
const KEY: [u8; 16] = [
    0x14, 0x6A, 0xDD, 0xAE, 0x53, 0xA9, 0xA7, 0x52, 0xAA, 0x08, 0x41, 0x36, 0x0B, 0xF5, 0x5A, 0x9F,
];

/// Revisions (challenge `version % 10`) 0 and 1 hash nothing: the answer is fixed.
const FIXED: [[u64; 2]; 2] = [
    [0x3341_181C_03CB_675C, 0x8ED3_83AA_1F4C_D1E8],
    [0x1841_181C_03CB_675C, 0x8ED3_83AA_1F4C_D1E8],
];

/// `CUdevice_attribute` numbers of the PCI location.
const ATTR_PCI_BUS_ID: i32 = 33;
const ATTR_PCI_DEVICE_ID: i32 = 34;
const ATTR_PCI_DOMAIN_ID: i32 = 50;

/// RFC 1319's substitution table, built from the digits of pi.
const S: [u8; 256] = [
    41, 46, 67, 201, 162, 216, 124, 1, 61, 54, 84, 161, 236, 240, 6, 19, 98, 167, 5, 243, 192, 199,
    115, 140, 152, 147, 43, 217, 188, 76, 130, 202, 30, 155, 87, 60, 253, 212, 224, 22, 103, 66,
    111, 24, 138, 23, 229, 18, 190, 78, 196, 214, 218, 158, 222, 73, 160, 251, 245, 142, 187, 47,
    238, 122, 169, 104, 121, 145, 21, 178, 7, 63, 148, 194, 16, 137, 11, 34, 95, 33, 128, 127, 93,
    154, 90, 144, 50, 39, 53, 62, 204, 231, 191, 247, 151, 3, 255, 25, 48, 179, 72, 165, 181, 209,
    215, 94, 146, 42, 172, 86, 170, 198, 79, 184, 56, 210, 150, 164, 125, 182, 118, 252, 107, 226,
    156, 116, 4, 241, 69, 157, 112, 89, 100, 113, 135, 32, 134, 91, 207, 101, 230, 45, 168, 2, 27,
    96, 37, 173, 174, 176, 185, 246, 28, 70, 97, 105, 52, 64, 126, 15, 85, 71, 163, 35, 221, 81,
    175, 58, 195, 92, 249, 206, 186, 197, 234, 38, 44, 83, 13, 110, 133, 40, 132, 9, 211, 223, 205,
    244, 65, 129, 77, 82, 106, 220, 55, 200, 108, 193, 171, 250, 36, 225, 123, 8, 12, 189, 177, 74,
    120, 136, 149, 139, 227, 99, 232, 109, 233, 203, 213, 254, 59, 0, 29, 57, 242, 239, 183, 14,
    102, 88, 208, 228, 166, 119, 114, 248, 235, 117, 75, 10, 49, 68, 80, 180, 143, 237, 31, 26,
    219, 153, 141, 51, 159, 17, 131, 20,
];

/// Streaming MD2. `x` is the 48-byte state (its first 16 bytes become the
/// digest), `c` the running checksum, `n` the bytes of the current block
/// seen so far (kept in `x[16..32]`), `l` the last checksum byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Md2 {
    x: [u8; 48],
    c: [u8; 16],
    n: usize,
    l: u8,
}

impl Md2 {
    pub(crate) fn new() -> Self {
        Md2 {
            x: [0; 48],
            c: [0; 16],
            n: 0,
            l: 0,
        }
    }

    fn byte(&mut self, b: u8) {
        let j = self.n;
        self.x[16 + j] = b;
        self.x[32 + j] = b ^ self.x[j];
        self.c[j] ^= S[(b ^ self.l) as usize];
        self.l = self.c[j];
        self.n += 1;
        if self.n == 16 {
            self.n = 0;
            let mut t = 0u8;
            for round in 0..18u8 {
                for k in 0..48 {
                    self.x[k] ^= S[t as usize];
                    t = self.x[k];
                }
                t = t.wrapping_add(round);
            }
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.byte(b);
        }
    }

    pub(crate) fn finish(mut self) -> [u8; 16] {
        let pad = (16 - self.n) as u8;
        for _ in 0..pad {
            self.byte(pad);
        }
        let checksum = self.c;
        self.update(&checksum);
        self.x[..16].try_into().expect("16 bytes")
    }
}

/// HMAC-MD2 with the 16-byte key (one MD2 block, so no key hashing).
fn hmac_md2(key: &[u8; 16], message: &[u8]) -> [u8; 16] {
    let mut inner = Md2::new();
    inner.update(&key.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finish();
    let mut outer = Md2::new();
    outer.update(&key.map(|b| b ^ 0x5c));
    outer.update(&inner);
    outer.finish()
}

/// One device as hashed: what `cuDeviceGetUuid` and the PCI attributes report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Device {
    pub uuid: [u8; 16],
    pub pci_domain: i32,
    pub pci_bus: i32,
    pub pci_device: i32,
}

/// Everything the answer depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Inputs {
    pub version: u32,
    pub unix_seconds: u64,
    pub driver_version: u32,
    pub pid: u32,
    pub tid: u32,
    pub cudart_table: u64,
    pub integrity_table: u64,
    pub function: u64,
    pub devices: Vec<Device>,
}

impl std::fmt::Display for Inputs {
    /// Compact, with addresses in hex, for the debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "version={} unix_seconds={} driver_version={} pid={} tid={:#x} cudart_table={:#x} integrity_table={:#x} function={:#x}",
            self.version,
            self.unix_seconds,
            self.driver_version,
            self.pid,
            self.tid,
            self.cudart_table,
            self.integrity_table,
            self.function
        )?;
        for (i, d) in self.devices.iter().enumerate() {
            let uuid: String = d.uuid.iter().map(|b| format!("{b:02x}")).collect();
            write!(
                f,
                " dev{i}={uuid}/{:04x}:{:02x}:{:02x}",
                d.pci_domain, d.pci_bus, d.pci_device
            )?;
        }
        Ok(())
    }
}

impl Inputs {
    /// The hashed bytes: the C layout (x86-64 and AArch64, little-endian,
    /// no padding) of the fixed record, then of each device record.
    fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(48 + 28 * self.devices.len());
        for v in [self.driver_version, self.version, self.pid, self.tid] {
            m.extend_from_slice(&v.to_le_bytes());
        }
        for v in [
            self.cudart_table,
            self.integrity_table,
            self.function,
            self.unix_seconds,
        ] {
            m.extend_from_slice(&v.to_le_bytes());
        }
        for d in &self.devices {
            m.extend_from_slice(&d.uuid);
            for v in [d.pci_domain, d.pci_bus, d.pci_device] {
                m.extend_from_slice(&v.to_le_bytes());
            }
        }
        m
    }
}

/// The answer to the challenge in `inputs`.
pub(crate) fn compute(inputs: &Inputs) -> [u64; 2] {
    match inputs.version % 10 {
        r @ (0 | 1) => FIXED[r as usize],
        _ => {
            let d = hmac_md2(&KEY, &inputs.message());
            [
                u64::from_le_bytes(d[..8].try_into().expect("8 bytes")),
                u64::from_le_bytes(d[8..].try_into().expect("8 bytes")),
            ]
        }
    }
}

/// Slot 1 of the integrity table: `CUresult (unsigned version, uint64_t
/// unix_seconds, uint64_t result[2])`.
pub(super) unsafe extern "C" fn check(
    version: c_uint,
    unix_seconds: u64,
    result: *mut [u64; 2],
) -> u32 {
    super::export_tables::note(super::export_tables::INTEGRITY, 1);
    guard(|| {
        if result.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        // The values cuDriverGetVersion, cuDeviceGetCount, cuDeviceGetUuid
        // and cuDeviceGetAttribute answer in this client.
        let driver_version = session()?.ack.driver_version as u32;
        let devices = inventory()?
            .devices
            .iter()
            .map(|d| {
                let attr = |a: i32| {
                    d.attributes
                        .iter()
                        .find(|(k, _)| *k == a)
                        .map_or(0, |(_, v)| *v)
                };
                Device {
                    uuid: d.uuid,
                    pci_domain: attr(ATTR_PCI_DOMAIN_ID),
                    pci_bus: attr(ATTR_PCI_BUS_ID),
                    pci_device: attr(ATTR_PCI_DEVICE_ID),
                }
            })
            .collect();
        let (cudart_table, integrity_table, function) = super::export_tables::integrity_inputs();
        let inputs = Inputs {
            version,
            unix_seconds,
            driver_version,
            pid: std::process::id(),
            // SAFETY: pthread_self has no preconditions. Its low 32 bits
            // are what cudart hashes on its side.
            tid: unsafe { libc::pthread_self() } as u32,
            cudart_table,
            integrity_table,
            function,
            devices,
        };
        let answer = compute(&inputs);
        if super::may_log() {
            tracing::debug!(%inputs, answer = format_args!("{:016x} {:016x}", answer[0], answer[1]), "integrity check answered");
        }
        crate::cuda::out(result, answer)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(d: &[u8]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn md2(data: &[u8]) -> String {
        let mut m = Md2::new();
        m.update(data);
        hex(&m.finish())
    }

    /// A state in the 66-byte layout of the published vectors:
    /// X (48), checksum (16), bytes in the block, last checksum byte.
    fn state(raw: [u8; 66]) -> Md2 {
        Md2 {
            x: raw[..48].try_into().unwrap(),
            c: raw[48..64].try_into().unwrap(),
            n: raw[64] as usize,
            l: raw[65],
        }
    }

    #[test]
    fn md2_rfc1319_vectors() {
        assert_eq!(md2(b""), "8350e5a3e24c153df2275c9f80692773");
        assert_eq!(md2(b"a"), "32ec01ec4a6dac72c0ab96fb34c0b5d1");
        assert_eq!(md2(b"abc"), "da853b0d3f88d99b30283a69e6ded6bb");
        assert_eq!(md2(b"message digest"), "ab4f496bfb2a530b219ff33031fe06b0");
        assert_eq!(
            md2(b"abcdefghijklmnopqrstuvwxyz"),
            "4e8ddff3650292ab5a4108c3aa47940b"
        );
        assert_eq!(
            md2(
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
            ),
            "d5976f79d83d3a0dc9806c3c66f3efd8"
        );
        // Streaming in pieces gives the same digest.
        let mut m = Md2::new();
        m.update(b"message ");
        m.update(b"digest");
        assert_eq!(hex(&m.finish()), "ab4f496bfb2a530b219ff33031fe06b0");
    }

    /// Intermediate states published with the reverse-engineered algorithm:
    /// after the ipad key block, then after the fixed record of a real
    /// CUDA 12.8 run, then after one device record.
    #[test]
    fn published_intermediate_states() {
        let mut m = Md2::new();
        m.update(&KEY.map(|b| b ^ 0x36));
        assert_eq!(hex(&m.x[..16]), "8b219a49e86d1aeef237f9b54a8c3c75");
        assert_eq!(hex(&m.c), "57a110860e60441e705f67d1eb67a13d");
        assert_eq!((m.n, m.l), (0, 0x3d));

        let inputs = Inputs {
            version: 12082,
            unix_seconds: 0x682b_9cee,
            driver_version: 0x2f30,
            pid: 0x002f_a423,
            tid: 0xf79c_1000,
            cudart_table: 0x7fff_f695_8240,
            integrity_table: 0x7fff_f695_8220,
            function: 0x7fff_f2aa_f4a0,
            devices: vec![],
        };
        m.update(&inputs.message());
        assert_eq!(hex(&m.x[..16]), "0afdabc9ff9ba0be4d303282744fa748");
        assert_eq!(hex(&m.c), "6428d9e1d434c0a94988c96158dd6674");
        assert_eq!((m.n, m.l), (0, 0x74));

        let mut m = state([
            0x84, 0xfd, 0x93, 0x10, 0xc6, 0xdb, 0xb3, 0xbc, 0x49, 0xc2, 0x25, 0xe7, 0xda, 0x6e,
            0x22, 0x6f, 0x9b, 0xbd, 0x81, 0x59, 0xc3, 0x01, 0x9a, 0x7a, 0x26, 0x34, 0x39, 0x0f,
            0x2a, 0x56, 0x13, 0xb1, 0xf6, 0xbc, 0x7f, 0xa1, 0x8f, 0x04, 0xa5, 0x4d, 0x0d, 0x78,
            0xab, 0x20, 0xf8, 0x23, 0x20, 0xa5, 0x3f, 0x67, 0x36, 0xe2, 0xde, 0x8a, 0xe5, 0xdf,
            0xe1, 0xf2, 0x03, 0x94, 0xad, 0xdc, 0x9a, 0xda, 0x00, 0xda,
        ]);
        let mut uuid = [0u8; 16];
        for (i, w) in [0x8a2b_fe9au32, 0x382d_25ac, 0xc5ae_37ea, 0x5f32_716d]
            .iter()
            .enumerate()
        {
            uuid[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
        let dev = Inputs {
            devices: vec![Device {
                uuid,
                pci_domain: 0,
                pci_bus: 2,
                pci_device: 0,
            }],
            ..inputs
        };
        m.update(&dev.message()[48..]);
        assert_eq!(
            m,
            state([
                0x1f, 0xd8, 0x25, 0xd2, 0xdf, 0xfa, 0x64, 0xc7, 0xb6, 0x1a, 0xaf, 0x22, 0xb8, 0x79,
                0xfb, 0x96, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x7c, 0x9d, 0x46, 0xd2, 0x1f, 0xd8, 0x25, 0xd2, 0xdd, 0xfa, 0x64, 0xc7, 0xb6, 0x1a,
                0xaf, 0x22, 0xe6, 0x17, 0xbd, 0x3a, 0xd7, 0xdd, 0x5f, 0x82, 0x8c, 0x87, 0xce, 0x86,
                0x66, 0xaf, 0xa0, 0x50, 0x7a, 0x7d, 0xbb, 0xbc, 0x0c, 0x50,
            ])
        );
    }

    /// The published finalization vector: padding and checksum block.
    #[test]
    fn published_finalization() {
        let m = state([
            0x3e, 0x4b, 0xf2, 0x95, 0x71, 0xf5, 0x6b, 0x51, 0x07, 0xbf, 0x4b, 0xf1, 0x04, 0x0e,
            0x8e, 0x0b, 0x5f, 0x4d, 0x30, 0x0c, 0x0f, 0x0c, 0xae, 0xfb, 0x48, 0xaf, 0x23, 0xb5,
            0xea, 0x4c, 0xc2, 0xdb, 0xd7, 0xdf, 0x88, 0x74, 0x39, 0x58, 0x16, 0x3a, 0x1f, 0x7c,
            0x9b, 0x20, 0x7e, 0x7e, 0x94, 0xc8, 0x8b, 0xc6, 0xb2, 0x38, 0x0d, 0x07, 0x7d, 0xbd,
            0x90, 0xd5, 0x39, 0x63, 0xeb, 0x1d, 0x4f, 0x40, 0x00, 0x40,
        ]);
        assert_eq!(hex(&m.finish()), "002353065e96f69c61aa962d2ecda858");
    }

    /// Answers of the real driver 580.159.04 (H200) to eleven challenges,
    /// with every input it hashed, from the GPU check's probe
    /// (`tests/gpu/procaddr/probe_tables.c`, 2026-11-21).
    #[test]
    fn real_driver_580_answers() {
        let mut uuid = [0u8; 16];
        for (i, b) in uuid.iter_mut().enumerate() {
            *b = u8::from_str_radix(&"50ea4c17d65c14ea4df49afd6081fabd"[2 * i..2 * i + 2], 16)
                .unwrap();
        }
        for (version, answer) in [
            (12080, [0x3341_181c_03cb_675c, 0x8ed3_83aa_1f4c_d1e8]),
            (12081, [0x1841_181c_03cb_675c, 0x8ed3_83aa_1f4c_d1e8]),
            (12082, [0x3a16_433f_d9c7_aaa3, 0xfe80_9262_b5f3_0eaf]),
            (12085, [0x150b_ba35_da7d_2941, 0xdef9_1a99_5924_1960]),
            (12090, [0x3341_181c_03cb_675c, 0x8ed3_83aa_1f4c_d1e8]),
            (12092, [0x5007_b6a9_9542_7281, 0xe018_8f81_f65b_a72f]),
            (13000, [0x3341_181c_03cb_675c, 0x8ed3_83aa_1f4c_d1e8]),
            (13001, [0x1841_181c_03cb_675c, 0x8ed3_83aa_1f4c_d1e8]),
            (13002, [0xfce5_3436_b95b_ca6e, 0xc4d4_ac32_e15a_111a]),
            (13005, [0xa63c_e2d4_9a25_0c47, 0xcf19_6aba_89fd_c1e7]),
            (13009, [0x4936_7e1b_71c6_97af, 0xb35a_662f_b8ab_091e]),
        ] {
            let inputs = Inputs {
                version,
                unix_seconds: 1_763_700_000 + u64::from(version),
                driver_version: 13000,
                pid: 430,
                tid: 0xdf43_f740,
                cudart_table: 0x7f05_df04_c680,
                integrity_table: 0x7f05_df04_c660,
                function: 0x7f05_d99a_b350,
                devices: vec![Device {
                    uuid,
                    pci_domain: 0,
                    pci_bus: 0,
                    pci_device: 6,
                }],
            };
            assert_eq!(compute(&inputs), answer, "challenge {version}");
        }
    }

    fn sample() -> Inputs {
        Inputs {
            version: 13002,
            unix_seconds: 1_763_700_000,
            driver_version: 13000,
            pid: 4242,
            tid: 0xdead_beef,
            cudart_table: 0x7f00_0000_1000,
            integrity_table: 0x7f00_0000_2000,
            function: 0x7f00_0000_3000,
            devices: vec![Device {
                uuid: *b"TF-TEST-DEVICE-0",
                pci_domain: 0,
                pci_bus: 1,
                pci_device: 0,
            }],
        }
    }

    #[test]
    fn answer_is_deterministic_and_binds_every_input() {
        let base = sample();
        let a = compute(&base);
        assert_eq!(a, compute(&base.clone()));
        let variants: Vec<Inputs> = vec![
            Inputs {
                version: 13003,
                ..base.clone()
            },
            Inputs {
                unix_seconds: base.unix_seconds + 1,
                ..base.clone()
            },
            Inputs {
                driver_version: 12090,
                ..base.clone()
            },
            Inputs {
                pid: 4243,
                ..base.clone()
            },
            Inputs {
                tid: 1,
                ..base.clone()
            },
            Inputs {
                cudart_table: 0x7f00_0000_1008,
                ..base.clone()
            },
            Inputs {
                integrity_table: 0,
                ..base.clone()
            },
            Inputs {
                function: 1,
                ..base.clone()
            },
            Inputs {
                devices: vec![],
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(compute(&v), a, "{v:?}");
        }
        assert_eq!(base.message().len(), 48 + 28);
    }

    #[test]
    fn revisions_0_and_1_are_fixed() {
        for version in [13000, 12080, 13001] {
            let mut i = sample();
            i.version = version;
            let a = compute(&i);
            i.pid += 1;
            assert_eq!(compute(&i), a);
            assert_eq!(a, FIXED[(version % 10) as usize]);
        }
    }
}
