//! The API surface that the TensorFusion client libraries export and remote:
//! every CUDA driver and NVML entry point name with its C signature, stable
//! indices into those tables, and the wire opcodes of remoted calls.
//!
//! Everything under `generated/` is produced by `cargo xtask codegen` from the
//! NVIDIA headers (see `scripts/fetch-headers.sh`), the reference export lists
//! in `codegen/reference/` and the annotations in `codegen/remoted.txt`.
//!
//! Indices (`cuda_fn::cuInit`) are only meaningful together with the list they
//! were generated from; [`CUDA_API_HASH`] / [`NVML_API_HASH`] identify that list
//! so that separately built libraries can detect a mismatch.

#![forbid(unsafe_code)]

mod generated {
    pub mod cuda;
    pub mod nvml;
    pub mod procaddr;
    pub mod remoted;
}
pub mod procaddr;

pub use generated::cuda::{cuda_fn, CUDA_API_HASH, CUDA_COUNT, CUDA_NAMES, CUDA_SIGNATURES};
pub use generated::nvml::{nvml_fn, NVML_API_HASH, NVML_COUNT, NVML_NAMES, NVML_SIGNATURES};
pub use generated::remoted::{op, CallClass, REMOTED};

/// Which library an entry point belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Api {
    /// The CUDA driver API (`libcuda.so.1`).
    Cuda,
    /// NVML (`libnvidia-ml.so.1`).
    Nvml,
}

/// The C signature of one entry point, as spelled in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FnSig {
    /// Symbol name.
    pub name: &'static str,
    /// Return type (`CUresult`, `const char *`); empty when `!in_header`.
    pub ret: &'static str,
    /// Parameters in order; empty for `(void)` and when `!in_header`.
    pub params: &'static [Param],
    /// False for names only known from a driver's export list (internal or
    /// platform-specific entry points): exported, never remoted.
    pub in_header: bool,
}

/// One parameter of an [`FnSig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param {
    /// Type with the name removed: `const char *`, `unsigned int[3]`,
    /// `void (*)(void *)`; `...` for varargs.
    pub ty: &'static str,
    /// Parameter name from the header, `argN` when the header has none.
    pub name: &'static str,
}

/// FNV-1a 64 over each name followed by a NUL byte; [`CUDA_API_HASH`] is
/// `api_hash(&CUDA_NAMES)`.
pub const fn api_hash(names: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < names.len() {
        let bytes = names[i].as_bytes();
        let mut j = 0;
        while j <= bytes.len() {
            let b = if j < bytes.len() { bytes[j] } else { 0 };
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
            j += 1;
        }
        i += 1;
    }
    h
}

/// Index of a CUDA entry point in the `CUDA_*` tables.
pub fn cuda_index(name: &str) -> Option<usize> {
    CUDA_NAMES.binary_search(&name).ok()
}

/// Index of an NVML entry point in the `NVML_*` tables.
pub fn nvml_index(name: &str) -> Option<usize> {
    NVML_NAMES.binary_search(&name).ok()
}

/// The [`REMOTED`] entry with this opcode.
pub fn remoted_by_opcode(opcode: u32) -> Option<&'static (usize, Api, CallClass, u32)> {
    REMOTED
        .binary_search_by_key(&opcode, |r| r.3)
        .ok()
        .map(|i| &REMOTED[i])
}

/// The API name of a remoted opcode (`cuMemAlloc_v2`), or `control N` for
/// the protocol's own requests (handshake, goodbye): for logs and statistics.
pub fn opcode_name(opcode: u32) -> String {
    match remoted_by_opcode(opcode) {
        Some((i, Api::Cuda, ..)) => CUDA_NAMES[*i].to_string(),
        Some((i, Api::Nvml, ..)) => NVML_NAMES[*i].to_string(),
        None => format!("control {opcode}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_names() {
        assert_eq!(api_hash(&CUDA_NAMES), CUDA_API_HASH);
        assert_eq!(api_hash(&NVML_NAMES), NVML_API_HASH);
        assert_eq!(api_hash(&[]), 0xcbf2_9ce4_8422_2325);
        assert_ne!(api_hash(&["ab", "c"]), api_hash(&["a", "bc"]));
    }

    #[test]
    fn tables_are_sorted_unique_and_parallel() {
        for (names, sigs) in [
            (&CUDA_NAMES[..], &CUDA_SIGNATURES[..]),
            (&NVML_NAMES[..], &NVML_SIGNATURES[..]),
        ] {
            assert!(names.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(names.len(), sigs.len());
            for (n, s) in names.iter().zip(sigs) {
                assert_eq!(*n, s.name);
                assert_eq!(s.in_header, !s.ret.is_empty());
            }
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(cuda_index("cuInit"), Some(cuda_fn::cuInit));
        assert_eq!(CUDA_NAMES[cuda_fn::cuMemAlloc_v2], "cuMemAlloc_v2");
        assert_eq!(nvml_index("nvmlInit_v2"), Some(nvml_fn::nvmlInit_v2));
        assert_eq!(cuda_index("nvmlInit_v2"), None);
        assert_eq!(nvml_index(""), None);
    }

    #[test]
    fn signatures_have_expected_shapes() {
        let s = &CUDA_SIGNATURES[cuda_fn::cuGetErrorString];
        assert_eq!(
            (s.ret, s.params.len(), s.params[1].ty),
            ("CUresult", 2, "const char **")
        );
        // The legacy 32-bit variant is a distinct ABI name.
        assert_eq!(
            CUDA_SIGNATURES[cuda_fn::cuMemAlloc].params[1].ty,
            "unsigned int"
        );
        assert_eq!(
            CUDA_SIGNATURES[cuda_fn::cuMemAlloc_v2].params[1].ty,
            "size_t"
        );
        assert!(NVML_SIGNATURES[nvml_fn::nvmlInit_v2].params.is_empty());
        assert_eq!(
            NVML_SIGNATURES[nvml_fn::nvmlErrorString].ret,
            "const char *"
        );
    }

    #[test]
    fn remoted_entries_are_consistent() {
        assert!(REMOTED.windows(2).all(|w| w[0].3 < w[1].3));
        for &(index, api, _, opcode) in REMOTED {
            let sig = match api {
                Api::Cuda => &CUDA_SIGNATURES[index],
                Api::Nvml => &NVML_SIGNATURES[index],
            };
            assert!(sig.in_header, "{} remoted without a prototype", sig.name);
            assert_eq!(remoted_by_opcode(opcode).map(|r| r.0), Some(index));
        }
        assert_eq!(
            remoted_by_opcode(op::cuInit).map(|r| r.2),
            Some(CallClass::Sync)
        );
        assert_eq!(remoted_by_opcode(0), None);
    }
}
