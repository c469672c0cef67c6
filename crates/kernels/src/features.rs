//! What this CPU can run, detected once per process: every kernel choice reads it here, so
//! one place says which instruction sets the process may use. (AMX also needs the kernel's
//! permission, which [`super::amx::available`] asks for, once.)

use std::sync::OnceLock;

/// The instruction sets the kernels choose between.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cpu {
    /// 512-bit FMAs retire at twice the multiply-adds of 256-bit ones: Intel's AVX-512 cores
    /// and AMD's from Zen 5 on (measured on a Zen 5 EPYC, one core, independent chains:
    /// 8.2 G/s of each width). Zen 4 splits them in two, so 256-bit code already reaches its
    /// rate there. AMD documents Zen 5's laptop parts as splitting them too; not measured
    /// here (`SENTIMENT_F32_KERNEL=gemm` picks the other kernel).
    pub wide_fma: bool,
    /// `vdpbf16ps` does more multiply-adds per second than f32 FMAs: on AMD (Zen 4, and Zen 5
    /// at 7.6 G/s beside 8.2 G/s of FMAs, for twice the work each). Intel's retires at a
    /// quarter of its FMA rate (1.35 against 5.5 G/s on a Sapphire Rapids-class Xeon), half
    /// the multiply-adds, so there bf16 products pay only on AMX tiles.
    pub bf16_dot_beats_fma: bool,
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
    let (intel, amd) = (vendor == b"GenuineIntel", vendor == b"AuthenticAMD");
    let avx512f = is_x86_feature_detected!("avx512f");
    let avx512_bf16 = avx512f && is_x86_feature_detected!("avx512bf16");
    Cpu {
        wide_fma: avx512f && (intel || (amd && family() >= ZEN5_FAMILY)),
        bf16_dot_beats_fma: avx512_bf16 && amd,
        avx2: is_x86_feature_detected!("avx2"),
        avx512f,
        avx512_vnni: avx512f && is_x86_feature_detected!("avx512vnni"),
        avx512_bf16,
    }
}

/// AMD's family number of Zen 5 (Zen 3 and Zen 4 are 0x19).
#[cfg(target_arch = "x86_64")]
const ZEN5_FAMILY: u32 = 0x1a;

/// The CPU's family number as vendors document it: the base family, plus the extended one
/// where the base is 0xf.
#[cfg(target_arch = "x86_64")]
fn family() -> u32 {
    let eax = std::arch::x86_64::__cpuid(1).eax;
    let base = (eax >> 8) & 0xf;
    if base == 0xf {
        base + ((eax >> 20) & 0xff)
    } else {
        base
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Cpu {
    Cpu::default()
}
