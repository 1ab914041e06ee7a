//! TEST ONLY: NVML answers of the host-memory backend.
//!
//! Every value here is a FIXED TEST VALUE, chosen to look like a
//! Hopper-class board so that tools format it; none is measured. Memory is
//! the exception: it comes from the backend's host-memory accounting. Some
//! facts are deliberately unsupported (fans), so that the client's
//! `NVML_ERROR_NOT_SUPPORTED` path is exercised end to end. Device 0 has
//! NvLink (18 links, the first [`ACTIVE_LINKS`] active) and a completed
//! fabric registration; every other device has neither, like a PCIe board,
//! so NvLink and fabric queries answer `NVML_ERROR_NOT_SUPPORTED` there.

use tf_protocol::nvml_msgs::{FieldId, FieldValue, NvmlAnswer, Query};
use tf_protocol::status::nvml;
use tf_worker_core::BResult;

use crate::HostBackend;

/// NVML's text form of a 16-byte device UUID, as the real driver prints
/// CUDA's `CUuuid`: `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub(crate) fn uuid_text(u: &[u8; 16]) -> String {
    let hex =
        |r: std::ops::Range<usize>| u[r].iter().map(|b| format!("{b:02x}")).collect::<String>();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        hex(0..4),
        hex(4..6),
        hex(6..8),
        hex(8..10),
        hex(10..16)
    )
}

/// The PCI bus id of device `d`, as `nvmlPciInfo_t.busId` spells it.
pub(crate) fn bus_id(d: usize) -> String {
    format!("00000000:{:02X}:00.0", d + 1)
}

/// Test values per clock type (graphics, SM, memory, video), MHz.
const MAX_CLOCKS: [u64; 4] = [1980, 1980, 2619, 1755];
const CLOCKS: [u64; 4] = [1410, 1410, 2619, 1275];
/// Temperature thresholds: shutdown, slowdown, memory max, GPU max (°C).
const THRESHOLDS: [u64; 4] = [92, 89, 95, 87];

/// NvLink links of device 0 (Hopper's count) and how many are active.
pub const NVLINKS: u32 = 18;
pub const ACTIVE_LINKS: u32 = 4;
/// Fabric facts of device 0: `clusterUuid` is bytes 0x10..=0x1f.
const FABRIC_CLIQUE: u64 = 0x7fff;
/// `NVML_GPU_FABRIC_STATE_COMPLETED`.
const FABRIC_COMPLETED: u64 = 3;
/// Degraded bandwidth false (2), route recovery false (2 << 2).
const FABRIC_HEALTH_MASK: u64 = 0x0a;
/// `NVML_GPU_FABRIC_HEALTH_SUMMARY_HEALTHY`.
const FABRIC_HEALTHY: u64 = 1;
/// Every field value is stamped with this (µs since 1970) plus its field
/// id, and this latency, so that a test sees them forwarded.
pub const FIELD_TIMESTAMP: i64 = 1_700_000_000_000_000;
pub const FIELD_LATENCY_US: i64 = 3;

/// `nvmlValueType_t` values.
const DOUBLE: u32 = 0;
const UNSIGNED_INT: u32 = 1;
const UNSIGNED_LONG_LONG: u32 = 3;
const SIGNED_INT: u32 = 5;

/// The test value of one field of device `d` (`(valueType, raw union bits)`
/// or a per-field status). Fields not listed are `NOT_SUPPORTED`.
fn field(d: usize, f: FieldId) -> Result<(u32, u64), u32> {
    let nvlink = d == 0;
    match f.field {
        // NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION, mJ.
        83 => Ok((UNSIGNED_LONG_LONG, 123_456_789 + d as u64)),
        // NVML_FI_DEV_NVLINK_LINK_COUNT
        91 if nvlink => Ok((UNSIGNED_INT, u64::from(NVLINKS))),
        // NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, KiB, scope = link.
        138 if nvlink && f.scope < NVLINKS => {
            Ok((UNSIGNED_LONG_LONG, u64::from(f.scope) * 1000 + 7))
        }
        138 if nvlink => Err(nvml::INVALID_ARGUMENT),
        // NVML_FI_DEV_TEMPERATURE_SLOWDOWN_TLIMIT: a negative int.
        194 => Ok((SIGNED_INT, u64::from((-7i32) as u32))),
        // NVML_FI_DEV_GPU_TEMP, °C with a fraction.
        308 => Ok((DOUBLE, 35.5f64.to_bits())),
        _ => Err(nvml::NOT_SUPPORTED),
    }
}

impl tf_worker_core::NvmlBackend for HostBackend {
    fn nvml_field_values(&self, index: u32, fields: &[FieldId]) -> BResult<Vec<FieldValue>> {
        let d = index as usize;
        if d >= self.devices {
            return Err(nvml::INVALID_ARGUMENT);
        }
        Ok(fields
            .iter()
            .map(|f| {
                let (status, (value_type, value)) = match field(d, *f) {
                    Ok(v) => (nvml::SUCCESS, v),
                    Err(e) => (e, (0, 0)),
                };
                FieldValue {
                    status,
                    value_type,
                    value,
                    timestamp: FIELD_TIMESTAMP + i64::from(f.field),
                    latency_us: FIELD_LATENCY_US,
                }
            })
            .collect())
    }

    fn nvml_query(&self, index: u32, query: Query, arg: u32) -> BResult<NvmlAnswer> {
        let d = index as usize;
        if d >= self.devices {
            return Err(nvml::INVALID_ARGUMENT);
        }
        let clock = |table: &[u64; 4]| {
            table
                .get(arg as usize)
                .map(|v| NvmlAnswer::nums([*v]))
                .ok_or(nvml::INVALID_ARGUMENT)
        };
        let one = |v: u64| Ok(NvmlAnswer::nums([v]));
        match query {
            Query::Serial => Ok(NvmlAnswer::text(format!("TF-TEST-SERIAL-{d:04}"))),
            Query::PciInfo => Ok(NvmlAnswer {
                // domain, bus, device, device id | vendor (NVIDIA), subsystem.
                nums: vec![0, d as u64 + 1, 0, 0x2330_10DE, 0x16C1_10DE],
                text: bus_id(d),
            }),
            Query::Brand => one(14),       // NVML_BRAND_NVIDIA
            Query::Architecture => one(9), // NVML_DEVICE_ARCH_HOPPER
            // Agrees with the CUDA attributes of `Backend::init` (9.0).
            Query::ComputeCapability => Ok(NvmlAnswer::nums([9, 0])),
            Query::MinorNumber => one(d as u64),
            Query::MaxClock | Query::DefaultAppClock => clock(&MAX_CLOCKS),
            Query::Clock | Query::AppClock => clock(&CLOCKS),
            Query::PowerLimitConstraints => Ok(NvmlAnswer::nums([200_000, 700_000])),
            Query::PowerDefaultLimit | Query::PowerLimit | Query::EnforcedPowerLimit => {
                one(700_000)
            }
            Query::PowerUsage => one(75_000),
            Query::VbiosVersion => Ok(NvmlAnswer::text("96.00.TEST.00.01")),
            Query::TemperatureThreshold => THRESHOLDS
                .get(arg as usize)
                .map(|v| NvmlAnswer::nums([*v]))
                .ok_or(nvml::NOT_SUPPORTED),
            Query::Temperature if arg == 0 => one(35),
            Query::Temperature => Err(nvml::INVALID_ARGUMENT),
            Query::Bar1Memory => Ok(NvmlAnswer::nums([256 << 20, 254 << 20, 2 << 20])),
            Query::Utilization => Ok(NvmlAnswer::nums([7, 3])),
            Query::PerformanceState => one(0),
            Query::EccMode => Ok(NvmlAnswer::nums([1, 1])),
            Query::TotalEccErrors => one(0),
            Query::PersistenceMode => one(1),
            Query::ComputeMode | Query::DisplayMode | Query::DisplayActive => one(0),
            Query::MigMode => Ok(NvmlAnswer::nums([0, 0])),
            Query::VirtualizationMode => one(0), // NVML_GPU_VIRTUALIZATION_MODE_NONE
            Query::MaxMigDeviceCount => one(7),
            Query::ValidateInforom => Ok(NvmlAnswer::default()),
            // A board without fans, like the SXM modules this imitates.
            Query::NumFans | Query::FanSpeed | Query::FanSpeedOf => Err(nvml::NOT_SUPPORTED),
            // Answered by the worker core from the session.
            Query::ComputeProcesses => Err(nvml::NOT_SUPPORTED),
            // PCIe 5.0 x16, running at 4.0 (idle) now.
            Query::MaxPcieLinkGeneration => one(5),
            Query::MaxPcieLinkWidth | Query::CurrPcieLinkWidth => one(16),
            Query::CurrPcieLinkGeneration => one(4),
            // KB/s: TX, RX; no other counter.
            Query::PcieThroughput => match arg {
                0 => one(1234),
                1 => one(5678),
                _ => Err(nvml::INVALID_ARGUMENT),
            },
            Query::NvLinkState | Query::NvLinkCapability if d != 0 => Err(nvml::NOT_SUPPORTED),
            Query::NvLinkState if arg < NVLINKS => one(u64::from(arg < ACTIVE_LINKS)),
            Query::NvLinkCapability if arg & 0xffff < NVLINKS => {
                let active = arg & 0xffff < ACTIVE_LINKS;
                match arg >> 16 {
                    // P2P, P2P atomics: over the active links.
                    0 | 2 => one(u64::from(active)),
                    // System memory access and atomics, SLI: none.
                    1 | 3 | 4 => one(0),
                    // VALID: every link exists.
                    5 => one(1),
                    _ => Err(nvml::INVALID_ARGUMENT),
                }
            }
            Query::NvLinkState | Query::NvLinkCapability => Err(nvml::INVALID_ARGUMENT),
            Query::GpuFabricInfo if !matches!(arg, 0 | 2 | 3) => {
                Err(nvml::ARGUMENT_VERSION_MISMATCH)
            }
            Query::GpuFabricInfo if d != 0 => Err(nvml::NOT_SUPPORTED),
            Query::GpuFabricInfo => Ok(NvmlAnswer::nums([
                u64::from_le_bytes([0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17]),
                u64::from_le_bytes([0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f]),
                0,
                FABRIC_CLIQUE,
                FABRIC_COMPLETED,
                if arg == 0 { 0 } else { FABRIC_HEALTH_MASK },
                if arg == 3 { FABRIC_HEALTHY } else { 0 },
            ])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_is_nvml_form() {
        let u: [u8; 16] = std::array::from_fn(|i| i as u8);
        assert_eq!(uuid_text(&u), "GPU-00010203-0405-0607-0809-0a0b0c0d0e0f");
    }
}
