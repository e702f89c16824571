//! Choosing CPU or CUDA.

use std::ffi::CString;
use tch::Device;

unsafe extern "C" {
    fn dlopen(filename: *const std::ffi::c_char, flags: std::ffi::c_int) -> *mut std::ffi::c_void;
}

const RTLD_NOW: std::ffi::c_int = 2;
const RTLD_GLOBAL: std::ffi::c_int = 0x100;

/// Load libtorch's CUDA backend if this install has it. Must run before the first libtorch call
/// (afterwards the backend registry is fixed); calling it again does nothing more. Returns
/// whether the library loaded (a CPU-only install answers false and keeps working).
pub fn load_cuda_backend() -> bool {
    static LOADED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LOADED.get_or_init(|| {
        let name = CString::new("libtorch_cuda.so").expect("no NUL");
        // SAFETY: dlopen with a valid NUL-terminated name; the handle is kept for the process.
        let handle = unsafe { dlopen(name.as_ptr(), RTLD_NOW | RTLD_GLOBAL) };
        !handle.is_null()
    })
}

/// What the caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// CUDA when a GPU is usable, else CPU.
    Auto,
    /// CPU even when a GPU is present.
    Cpu,
    /// CUDA or an error.
    Cuda,
}

impl std::str::FromStr for Want {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Want::Auto),
            "cpu" => Ok(Want::Cpu),
            "cuda" => Ok(Want::Cuda),
            _ => Err(format!("{s:?}: want auto, cpu or cuda")),
        }
    }
}

/// The device to run on, and a line saying why.
pub fn select(want: Want) -> Result<(Device, String), String> {
    let backend = load_cuda_backend();
    let gpus = if backend { tch::Cuda::device_count() } else { 0 };
    match (want, gpus) {
        (Want::Cpu, _) => Ok((Device::Cpu, "cpu (asked for)".into())),
        (_, n) if n > 0 => Ok((Device::Cuda(0), format!("cuda:0 ({n} GPU(s) visible)"))),
        (Want::Cuda, _) if !backend => {
            Err("--device cuda: this libtorch has no CUDA backend (install the full torch wheel; see scripts/install-libtorch.sh)".into())
        }
        (Want::Cuda, _) => Err("--device cuda: the CUDA backend loaded but no GPU is visible".into()),
        (Want::Auto, _) => Ok((
            Device::Cpu,
            if backend { "cpu (no GPU visible)".into() } else { "cpu (libtorch without CUDA)".into() },
        )),
    }
}
