//! Legacy device queries, answered from the device facts cached at `cuInit`
//! (the same attributes `cuDeviceGetAttribute` reports, so they agree).

use std::ffi::{c_char, c_int, c_uint};

use tf_protocol::status::cu;

use crate::cuda::{device, guard, out};

/// `CUdevprop`: fourteen ints.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct DevProp {
    max_threads_per_block: c_int,
    max_threads_dim: [c_int; 3],
    max_grid_size: [c_int; 3],
    shared_mem_per_block: c_int,
    total_constant_memory: c_int,
    simd_width: c_int,
    mem_pitch: c_int,
    regs_per_block: c_int,
    clock_rate: c_int,
    texture_align: c_int,
}

/// The `CUdevice_attribute` behind each field of `CUdevprop`, in order.
const PROP_ATTRIBUTES: [i32; 14] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];

fn attr(d: &tf_protocol::DeviceInfo, a: i32) -> c_int {
    d.attributes
        .iter()
        .find(|(k, _)| *k == a)
        .map_or(0, |(_, v)| *v)
}

fn props(d: &tf_protocol::DeviceInfo) -> DevProp {
    let v: Vec<c_int> = PROP_ATTRIBUTES.iter().map(|a| attr(d, *a)).collect();
    DevProp {
        max_threads_per_block: v[0],
        max_threads_dim: [v[1], v[2], v[3]],
        max_grid_size: [v[4], v[5], v[6]],
        shared_mem_per_block: v[7],
        total_constant_memory: v[8],
        simd_width: v[9],
        mem_pitch: v[10],
        regs_per_block: v[11],
        clock_rate: v[12],
        texture_align: v[13],
    }
}

/// `cuDeviceGetProperties(CUdevprop *prop, CUdevice dev)` (deprecated).
unsafe extern "C" fn cu_device_get_properties(prop: *mut DevProp, dev: c_int) -> u32 {
    guard(|| out(prop, props(device(dev)?)))
}

/// `cuDeviceComputeCapability(int *major, int *minor, CUdevice dev)` (deprecated).
unsafe extern "C" fn cu_device_compute_capability(
    major: *mut c_int,
    minor: *mut c_int,
    dev: c_int,
) -> u32 {
    guard(|| {
        let d = device(dev)?;
        if major.is_null() || minor.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        out(major, attr(d, 75))?;
        out(minor, attr(d, 76))
    })
}

/// `cuDeviceGetLuid(char *luid, unsigned int *deviceNodeMask, CUdevice dev)`:
/// a LUID exists on Windows only; Linux drivers answer NOT_SUPPORTED too.
unsafe extern "C" fn cu_device_get_luid(_luid: *mut c_char, _mask: *mut c_uint, dev: c_int) -> u32 {
    guard(|| {
        device(dev)?;
        Err(cu::NOT_SUPPORTED)
    })
}

/// Points the export slots of the functions implemented here at them.
pub(super) fn register(set: &mut dyn FnMut(usize, crate::Entry)) {
    use crate::Entry;
    use tf_api::cuda_fn as c;
    set(c::cuDeviceGetProperties, cu_device_get_properties as Entry);
    set(
        c::cuDeviceComputeCapability,
        cu_device_compute_capability as Entry,
    );
    set(c::cuDeviceGetLuid, cu_device_get_luid as Entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_follow_the_attributes() {
        let d = tf_protocol::DeviceInfo {
            attributes: (1..=14).map(|a| (a, a * 10)).collect(),
            ..Default::default()
        };
        let p = props(&d);
        assert_eq!(std::mem::size_of::<DevProp>(), 14 * 4);
        assert_eq!(p.max_threads_per_block, 10);
        assert_eq!(p.max_threads_dim, [20, 30, 40]);
        assert_eq!(p.max_grid_size, [50, 60, 70]);
        assert_eq!(p.texture_align, 140);
        assert_eq!(props(&Default::default()), DevProp::default());
    }
}
