//! The CNN arm on libtorch (through `tch`): the study's ResNet + dense head ([`net`]),
//! torchvision weight import ([`weights`]), live augmentation ([`augment`]), checkpointable
//! optimisers ([`optim`]), training ([`train`]), model bundles ([`bundle`]) and a loaded
//! bundle's scorer ([`score`]), which the inference stage (`renal-inference`) serves.
//!
//! libtorch comes from PyPI's torch 2.13.0 wheel (`scripts/install-libtorch.sh`). One binary
//! serves CPU and GPU machines: [`device::select`] loads `libtorch_cuda.so` when the install has
//! it, before any other libtorch call, which is what registers the CUDA backend (the linker
//! drops the library otherwise, since no symbol of it is referenced).

pub mod augment;
pub mod bundle;
pub mod device;
pub mod net;
pub mod optim;
pub mod parity;
pub mod score;
pub mod train;
pub mod weights;

/// libtorch's CPU random generator is one per process: tests that seed it or draw from it hold
/// this lock so a parallel test cannot reseed or advance it between their draws.
#[cfg(test)]
pub(crate) fn torch_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
