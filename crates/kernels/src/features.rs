//! What this CPU can run, detected once per process: every kernel choice reads it here, so
//! one place says which instruction sets the process may use. (AMX also needs the kernel's
//! permission, which [`super::amx::available`] asks for, once.)

use std::sync::OnceLock;

/// The instruction sets the kernels choose between.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cpu {
    /// The vendor is Intel: its 512-bit FMAs are full width, where AMD's Zen 4 splits them.
    pub intel: bool,
    pub avx2: bool,
    pub avx512f: bool,
    /// AVX-512 F and VNNI (`vpdpbusd`).
    pub avx512_vnni: bool,
    /// AVX-512 F and BF16 (`vdpbf16ps`).
    pub avx512_bf16: bool,
}

/// This CPU's instruction sets.
pub fn cpu() -> Cpu {
    static CPU: OnceLock<Cpu> = OnceLock::new();
    *CPU.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Cpu {
    let leaf0 = std::arch::x86_64::__cpuid(0);
    let vendor = [leaf0.ebx, leaf0.edx, leaf0.ecx]
        .map(u32::to_le_bytes)
        .concat();
    let avx512f = is_x86_feature_detected!("avx512f");
    Cpu {
        intel: vendor == b"GenuineIntel",
        avx2: is_x86_feature_detected!("avx2"),
        avx512f,
        avx512_vnni: avx512f && is_x86_feature_detected!("avx512vnni"),
        avx512_bf16: avx512f && is_x86_feature_detected!("avx512bf16"),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Cpu {
    Cpu::default()
}
