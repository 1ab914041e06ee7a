//! `cuGetProcAddress` lookups against the generated table
//! (`generated/procaddr.rs`, from `codegen/procaddr.tsv`).
//!
//! The driver is asked for a *base* name (`cuMemAlloc`), a CUDA version and
//! a flags value, and answers the ABI variant (`cuMemAlloc_v2`,
//! `cuMemcpyHtoD_v2_ptds`) that a program built for that version expects.
//! The table records, per base name and flags value, the answer from each
//! version on; this module only searches it.

pub use crate::generated::procaddr::{
    ABOVE_DRIVER_IS_INVALID, NOT_FOUND_RESULT, NOT_FOUND_RESULT_V1, PROC_TABLE, PROVISIONAL, SOURCE,
};

/// `CU_GET_PROC_ADDRESS_*` flag bits.
pub const LEGACY_STREAM: u64 = 1 << 0;
pub const PER_THREAD_DEFAULT_STREAM: u64 = 1 << 1;

/// `CUdriverProcAddressQueryResult`.
pub const STATUS_SUCCESS: u32 = 0;
pub const STATUS_SYMBOL_NOT_FOUND: u32 = 1;
pub const STATUS_VERSION_NOT_SUFFICIENT: u32 = 2;

/// What the driver answers from some version on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The entry point with this index in `CUDA_NAMES`.
    Found(usize),
    VersionNotSufficient,
    SymbolNotFound,
}

/// One base name: for flags 0, 1 and 2, `(first version, answer)` sorted by version.
#[derive(Clone, Copy, Debug)]
pub struct ProcEntry {
    pub name: &'static str,
    pub by_flags: [&'static [(i32, Answer)]; 3],
}

/// The outcome of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The entry point with this index in `CUDA_NAMES`.
    Found(usize),
    /// Known name, but not at this version (`CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT`).
    VersionNotSufficient,
    /// Unknown name (`CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND`).
    SymbolNotFound,
    /// Unknown flag bits, or (where the table says so) a version above the
    /// driver's (`CUDA_ERROR_INVALID_VALUE`).
    InvalidValue,
}

impl Lookup {
    /// The `CUdriverProcAddressQueryResult` to report (`None` with an invalid value).
    pub fn status(self) -> Option<u32> {
        match self {
            Lookup::Found(_) => Some(STATUS_SUCCESS),
            Lookup::VersionNotSufficient => Some(STATUS_VERSION_NOT_SUFFICIENT),
            Lookup::SymbolNotFound => Some(STATUS_SYMBOL_NOT_FOUND),
            Lookup::InvalidValue => None,
        }
    }
}

/// Looks `name` up in the generated table as a driver advertising
/// `driver_version` would.
pub fn lookup(name: &str, version: i32, flags: u64, driver_version: i32) -> Lookup {
    lookup_in(
        &PROC_TABLE,
        name,
        version,
        flags,
        driver_version,
        ABOVE_DRIVER_IS_INVALID,
    )
}

/// [`lookup`] over any table sorted by name (tests use small ones).
///
/// As drivers 535 and 580 do: the per-thread bit wins over the legacy bit
/// (flags 3 is per-thread), other bits are invalid; a negative version means
/// "the newest"; a version above the driver's own is refused when
/// `above_is_invalid` (cuda.h's rule, which 580 follows) or else answered as
/// at the driver's version (535): a driver knows nothing newer than itself.
pub fn lookup_in(
    table: &[ProcEntry],
    name: &str,
    version: i32,
    flags: u64,
    driver_version: i32,
    above_is_invalid: bool,
) -> Lookup {
    if flags & !(LEGACY_STREAM | PER_THREAD_DEFAULT_STREAM) != 0 {
        return Lookup::InvalidValue;
    }
    let slot = if flags & PER_THREAD_DEFAULT_STREAM != 0 {
        2
    } else if flags & LEGACY_STREAM != 0 {
        1
    } else {
        0
    };
    let version = if version < 0 { driver_version } else { version };
    if version > driver_version && above_is_invalid {
        return Lookup::InvalidValue;
    }
    let version = i64::from(version.min(driver_version));
    let Ok(i) = table.binary_search_by(|e| e.name.cmp(name)) else {
        return Lookup::SymbolNotFound;
    };
    let ranges = table[i].by_flags[slot];
    if ranges.is_empty() {
        // Known under other flags only: the driver knows the name.
        return Lookup::VersionNotSufficient;
    }
    match ranges
        .iter()
        .rev()
        .find(|(from, _)| i64::from(*from) <= version)
    {
        None => Lookup::VersionNotSufficient,
        Some((_, Answer::Found(index))) => Lookup::Found(*index),
        Some((_, Answer::VersionNotSufficient)) => Lookup::VersionNotSufficient,
        Some((_, Answer::SymbolNotFound)) => Lookup::SymbolNotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{cuda_fn as f, CUDA_NAMES};

    const T: &[ProcEntry] = &[
        ProcEntry {
            name: "cuLaunchKernel",
            by_flags: [
                &[(4000, Answer::Found(f::cuLaunchKernel))],
                &[(4000, Answer::Found(f::cuLaunchKernel))],
                &[
                    (4000, Answer::Found(f::cuLaunchKernel)),
                    (7000, Answer::Found(f::cuLaunchKernel_ptsz)),
                ],
            ],
        },
        ProcEntry {
            name: "cuMemAlloc",
            by_flags: [
                &[
                    (2000, Answer::Found(f::cuMemAlloc)),
                    (3020, Answer::Found(f::cuMemAlloc_v2)),
                ],
                &[
                    (2000, Answer::Found(f::cuMemAlloc)),
                    (3020, Answer::Found(f::cuMemAlloc_v2)),
                ],
                &[],
            ],
        },
        ProcEntry {
            name: "cuOld",
            by_flags: [
                &[
                    (2000, Answer::Found(f::cuInit)),
                    (9000, Answer::SymbolNotFound),
                ],
                &[],
                &[],
            ],
        },
    ];

    fn name(l: Lookup) -> &'static str {
        match l {
            Lookup::Found(i) => CUDA_NAMES[i],
            other => panic!("{other:?}"),
        }
    }

    /// A lookup against `T` by a driver of version 13000.
    fn l(n: &str, version: i32, flags: u64) -> Lookup {
        lookup_in(T, n, version, flags, 13000, false)
    }

    #[test]
    fn versions_select_the_abi_variant() {
        assert_eq!(name(l("cuMemAlloc", 2000, 0)), "cuMemAlloc");
        assert_eq!(name(l("cuMemAlloc", 3010, 0)), "cuMemAlloc");
        assert_eq!(name(l("cuMemAlloc", 3020, 0)), "cuMemAlloc_v2");
        assert_eq!(name(l("cuMemAlloc", 13000, 1)), "cuMemAlloc_v2");
    }

    #[test]
    fn flags_select_the_stream_variant() {
        assert_eq!(name(l("cuLaunchKernel", 12000, 0)), "cuLaunchKernel");
        assert_eq!(
            name(l("cuLaunchKernel", 12000, LEGACY_STREAM)),
            "cuLaunchKernel"
        );
        let pt = PER_THREAD_DEFAULT_STREAM;
        assert_eq!(name(l("cuLaunchKernel", 12000, pt)), "cuLaunchKernel_ptsz");
        assert_eq!(name(l("cuLaunchKernel", 6050, pt)), "cuLaunchKernel");
        // Both bits: the per-thread one wins.
        assert_eq!(name(l("cuLaunchKernel", 12000, 3)), "cuLaunchKernel_ptsz");
        assert_eq!(l("cuLaunchKernel", 12000, 4), Lookup::InvalidValue);
        assert_eq!(l("cuLaunchKernel", 12000, 1 << 40), Lookup::InvalidValue);
    }

    #[test]
    fn not_found_and_not_sufficient() {
        assert_eq!(l("cuNoSuchThing", 12000, 0), Lookup::SymbolNotFound);
        assert_eq!(l("cuMemAlloc_v2", 12000, 0), Lookup::SymbolNotFound);
        assert_eq!(l("cuMemAlloc", 1000, 0), Lookup::VersionNotSufficient);
        assert_eq!(l("cuMemAlloc", 0, 0), Lookup::VersionNotSufficient);
        assert_eq!(l("cuMemAlloc", 12000, 2), Lookup::VersionNotSufficient);
        assert_eq!(l("cuOld", 9000, 0), Lookup::SymbolNotFound);
        assert_eq!(name(l("cuOld", 8000, 0)), "cuInit");
        assert_eq!(Lookup::VersionNotSufficient.status(), Some(2));
        assert_eq!(Lookup::SymbolNotFound.status(), Some(1));
        assert_eq!(Lookup::Found(0).status(), Some(0));
        assert_eq!(Lookup::InvalidValue.status(), None);
    }

    #[test]
    fn versions_above_the_driver() {
        // Answered as at the driver's version: nothing newer than it exists.
        assert_eq!(name(l("cuMemAlloc", 13010, 0)), "cuMemAlloc_v2");
        assert_eq!(l("cuOld", 99999, 0), Lookup::SymbolNotFound);
        assert_eq!(name(lookup_in(T, "cuOld", 99999, 0, 8000, false)), "cuInit");
        assert_eq!(
            lookup_in(T, "cuOld", 99999, 0, 9000, false),
            Lookup::SymbolNotFound
        );
        // A negative version is the newest, in both conventions.
        assert_eq!(name(l("cuMemAlloc", -1, 0)), "cuMemAlloc_v2");
        assert_eq!(
            name(lookup_in(T, "cuMemAlloc", -7, 0, 13000, true)),
            "cuMemAlloc_v2"
        );
        // Where the table says cuda.h's rule holds instead.
        assert_eq!(
            lookup_in(T, "cuMemAlloc", 13010, 0, 13000, true),
            Lookup::InvalidValue
        );
        assert_eq!(
            name(lookup_in(T, "cuMemAlloc", 13000, 0, 13000, true)),
            "cuMemAlloc_v2"
        );
    }

    #[test]
    fn generated_table_is_sorted_and_answers_cudart() {
        assert!(PROC_TABLE.windows(2).all(|w| w[0].name < w[1].name));
        for e in &PROC_TABLE {
            for r in e.by_flags {
                assert!(r.windows(2).all(|w| w[0].0 < w[1].0), "{}", e.name);
            }
        }
        // What cudart 13 asks first, and some ABI and stream variants.
        for (n, v, fl, want) in [
            ("cuGetProcAddress", 11030, 0, "cuGetProcAddress"),
            ("cuGetProcAddress", 12000, 0, "cuGetProcAddress_v2"),
            ("cuInit", 2000, 0, "cuInit"),
            ("cuCtxCreate", 3020, 0, "cuCtxCreate_v2"),
            ("cuCtxGetDevice", 13000, 0, "cuCtxGetDevice_v2"),
            ("cuCtxGetDevice", 2000, 0, "cuCtxGetDevice"),
            ("cuMemcpyHtoD", 3020, 0, "cuMemcpyHtoD_v2"),
            ("cuMemcpyHtoD", 7000, 2, "cuMemcpyHtoD_v2_ptds"),
            ("cuMemcpyHtoD", 7000, 3, "cuMemcpyHtoD_v2_ptds"),
            ("cuLaunchKernel", 7000, 2, "cuLaunchKernel_ptsz"),
            (
                "cuDevicePrimaryCtxRelease",
                11000,
                0,
                "cuDevicePrimaryCtxRelease_v2",
            ),
        ] {
            assert_eq!(name(lookup(n, v, fl, 13050)), want, "{n} {v} {fl}");
        }
    }
}
