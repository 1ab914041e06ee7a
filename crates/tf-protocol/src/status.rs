//! Status codes that cross the wire: `CUresult` and `nvmlReturn_t` values,
//! with the names and texts the real driver gives for them. This is the one
//! table the client answers `cuGetErrorName`/`cuGetErrorString` and
//! `nvmlErrorString` from.

/// `CUresult` values (from cuda.h; numbers are ABI and never change).
pub mod cu {
    pub const SUCCESS: u32 = 0;
    pub const INVALID_VALUE: u32 = 1;
    pub const OUT_OF_MEMORY: u32 = 2;
    pub const NOT_INITIALIZED: u32 = 3;
    pub const DEINITIALIZED: u32 = 4;
    pub const NO_DEVICE: u32 = 100;
    pub const INVALID_DEVICE: u32 = 101;
    pub const DEVICE_NOT_LICENSED: u32 = 102;
    pub const INVALID_CONTEXT: u32 = 201;
    pub const CONTEXT_ALREADY_CURRENT: u32 = 202;
    pub const INVALID_HANDLE: u32 = 400;
    pub const NOT_FOUND: u32 = 500;
    pub const NOT_READY: u32 = 600;
    pub const ILLEGAL_ADDRESS: u32 = 700;
    pub const LAUNCH_FAILED: u32 = 719;
    pub const NOT_PERMITTED: u32 = 800;
    pub const NOT_SUPPORTED: u32 = 801;
    pub const SYSTEM_NOT_READY: u32 = 802;
    pub const DEVICE_UNAVAILABLE: u32 = 46;
    pub const UNKNOWN: u32 = 999;
}

/// `nvmlReturn_t` values (from nvml.h).
pub mod nvml {
    pub const SUCCESS: u32 = 0;
    pub const UNINITIALIZED: u32 = 1;
    pub const INVALID_ARGUMENT: u32 = 2;
    pub const NOT_SUPPORTED: u32 = 3;
    pub const NO_PERMISSION: u32 = 4;
    pub const NOT_FOUND: u32 = 6;
    pub const TIMEOUT: u32 = 10;
    pub const INSUFFICIENT_SIZE: u32 = 7;
    pub const DRIVER_NOT_LOADED: u32 = 9;
    pub const GPU_IS_LOST: u32 = 15;
    pub const LIBRARY_NOT_FOUND: u32 = 12;
    pub const FUNCTION_NOT_FOUND: u32 = 13;
    /// A versioned struct of a version the function does not take.
    pub const ARGUMENT_VERSION_MISMATCH: u32 = 25;
    pub const UNKNOWN: u32 = 999;
}

/// `(code, name, text)` as `cuGetErrorName`/`cuGetErrorString` give them.
/// NUL-terminated so the client can hand out pointers into it.
pub static CUDA_ERRORS: &[(u32, &str, &str)] = &[
    (0, "CUDA_SUCCESS\0", "no error\0"),
    (1, "CUDA_ERROR_INVALID_VALUE\0", "invalid argument\0"),
    (2, "CUDA_ERROR_OUT_OF_MEMORY\0", "out of memory\0"),
    (3, "CUDA_ERROR_NOT_INITIALIZED\0", "initialization error\0"),
    (4, "CUDA_ERROR_DEINITIALIZED\0", "driver shutting down\0"),
    (
        5,
        "CUDA_ERROR_PROFILER_DISABLED\0",
        "profiler disabled while using external profiling tool\0",
    ),
    (
        34,
        "CUDA_ERROR_STUB_LIBRARY\0",
        "CUDA driver is a stub library\0",
    ),
    (
        46,
        "CUDA_ERROR_DEVICE_UNAVAILABLE\0",
        "CUDA-capable device(s) is/are busy or unavailable\0",
    ),
    (
        100,
        "CUDA_ERROR_NO_DEVICE\0",
        "no CUDA-capable device is detected\0",
    ),
    (
        101,
        "CUDA_ERROR_INVALID_DEVICE\0",
        "invalid device ordinal\0",
    ),
    (
        102,
        "CUDA_ERROR_DEVICE_NOT_LICENSED\0",
        "device doesn't have valid Grid license\0",
    ),
    (
        200,
        "CUDA_ERROR_INVALID_IMAGE\0",
        "device kernel image is invalid\0",
    ),
    (
        201,
        "CUDA_ERROR_INVALID_CONTEXT\0",
        "invalid device context\0",
    ),
    (
        202,
        "CUDA_ERROR_CONTEXT_ALREADY_CURRENT\0",
        "context already current\0",
    ),
    (
        205,
        "CUDA_ERROR_MAP_FAILED\0",
        "mapping of buffer object failed\0",
    ),
    (
        209,
        "CUDA_ERROR_NO_BINARY_FOR_GPU\0",
        "no kernel image is available for execution on the device\0",
    ),
    (
        216,
        "CUDA_ERROR_CONTEXT_ALREADY_IN_USE\0",
        "exclusive-thread device already in use by a different thread\0",
    ),
    (
        218,
        "CUDA_ERROR_INVALID_PTX\0",
        "a PTX JIT compilation failed\0",
    ),
    (
        222,
        "CUDA_ERROR_UNSUPPORTED_PTX_VERSION\0",
        "the provided PTX was compiled with an unsupported toolchain.\0",
    ),
    (
        300,
        "CUDA_ERROR_INVALID_SOURCE\0",
        "device kernel image is invalid\0",
    ),
    (301, "CUDA_ERROR_FILE_NOT_FOUND\0", "file not found\0"),
    (
        400,
        "CUDA_ERROR_INVALID_HANDLE\0",
        "invalid resource handle\0",
    ),
    (
        401,
        "CUDA_ERROR_ILLEGAL_STATE\0",
        "the operation cannot be performed in the present state\0",
    ),
    (500, "CUDA_ERROR_NOT_FOUND\0", "named symbol not found\0"),
    (600, "CUDA_ERROR_NOT_READY\0", "device not ready\0"),
    (
        700,
        "CUDA_ERROR_ILLEGAL_ADDRESS\0",
        "an illegal memory access was encountered\0",
    ),
    (
        701,
        "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES\0",
        "too many resources requested for launch\0",
    ),
    (
        702,
        "CUDA_ERROR_LAUNCH_TIMEOUT\0",
        "the launch timed out and was terminated\0",
    ),
    (
        709,
        "CUDA_ERROR_CONTEXT_IS_DESTROYED\0",
        "context is destroyed\0",
    ),
    (710, "CUDA_ERROR_ASSERT\0", "device-side assert triggered\0"),
    (
        715,
        "CUDA_ERROR_ILLEGAL_INSTRUCTION\0",
        "an illegal instruction was encountered\0",
    ),
    (
        716,
        "CUDA_ERROR_MISALIGNED_ADDRESS\0",
        "misaligned address\0",
    ),
    (
        719,
        "CUDA_ERROR_LAUNCH_FAILED\0",
        "unspecified launch failure\0",
    ),
    (
        800,
        "CUDA_ERROR_NOT_PERMITTED\0",
        "operation not permitted\0",
    ),
    (
        801,
        "CUDA_ERROR_NOT_SUPPORTED\0",
        "operation not supported\0",
    ),
    (
        802,
        "CUDA_ERROR_SYSTEM_NOT_READY\0",
        "system not yet initialized\0",
    ),
    (
        803,
        "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH\0",
        "system has unsupported display driver / cuda driver combination\0",
    ),
    (
        900,
        "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED\0",
        "operation not permitted when stream is capturing\0",
    ),
    (999, "CUDA_ERROR_UNKNOWN\0", "unknown error\0"),
];

/// Looks up a CUDA status: `(name, text)`, both NUL-terminated.
pub fn cuda_error(code: u32) -> Option<(&'static str, &'static str)> {
    CUDA_ERRORS
        .binary_search_by_key(&code, |e| e.0)
        .ok()
        .map(|i| (CUDA_ERRORS[i].1, CUDA_ERRORS[i].2))
}

/// `nvmlErrorString` texts, NUL-terminated.
pub fn nvml_error_string(code: u32) -> &'static str {
    match code {
        0 => "Success\0",
        1 => "Uninitialized\0",
        2 => "Invalid Argument\0",
        3 => "Not Supported\0",
        4 => "Insufficient Permissions\0",
        5 => "Already Initialized\0",
        6 => "Not Found\0",
        7 => "Insufficient Size\0",
        8 => "Insufficient External Power\0",
        9 => "Driver Not Loaded\0",
        10 => "Timeout\0",
        12 => "NVML Shared Library Not Found\0",
        13 => "Function Not Found\0",
        15 => "GPU is lost\0",
        // Driver 580's texts, as scripts/gpu/30-nvml.sh compares them.
        11 => "Interrupt Request Issue\0",
        14 => "Corrupted infoROM\0",
        16 => "GPU requires reset\0",
        17 => "GPU access blocked by the operating system\0",
        18 => "Driver/library version mismatch\0",
        19 => "In use by another client\0",
        20 => "Insufficient Memory\0",
        21 => "No data\0",
        22 => "vGPU ECC not supported\0",
        23 => "Insufficient Resources\0",
        24 => "Invalid Frequency\0",
        25 => "Argument version mismatch\0",
        26 => "Requested functionality has been deprecated\0",
        27 => "System is not in ready state\0",
        28 => "No supported GPUs were found\0",
        29 => "Resource not in correct state to perform requested operation\0",
        30 => "Reset type is not supported for given device\0",
        _ => "Unknown Error\0",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_terminated() {
        assert!(CUDA_ERRORS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(CUDA_ERRORS
            .iter()
            .all(|e| e.1.ends_with('\0') && e.2.ends_with('\0')));
        assert_eq!(cuda_error(2).unwrap().0, "CUDA_ERROR_OUT_OF_MEMORY\0");
        assert!(cuda_error(12345).is_none());
    }
}
