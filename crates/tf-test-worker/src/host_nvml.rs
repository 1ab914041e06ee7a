//! TEST ONLY: NVML answers of the host-memory backend.
//!
//! Every value here is a FIXED TEST VALUE, chosen to look like a
//! Hopper-class board so that tools format it; none is measured. Memory is
//! the exception: it comes from the backend's host-memory accounting. Some
//! facts are deliberately unsupported (fans), so that the client's
//! `NVML_ERROR_NOT_SUPPORTED` path is exercised end to end.

use tf_protocol::nvml_msgs::{NvmlAnswer, Query};
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

impl tf_worker_core::NvmlBackend for HostBackend {
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
