// CPU feature detection and the active kernel table.
#pragma once

#include "kernels/kernels.h"

namespace qk {

// What the CPU (and the OS, for AVX state) supports, detected once.
struct CpuFeatures {
    bool avx2 = false;    // avx2 + fma + f16c, OS saves ymm state
    bool avx512 = false;  // avx512 f/bw/vl/vnni, OS saves zmm state
    bool amx = false;     // avx512 + AMX tile/int8/bf16 + AVX512_BF16, OS state granted
    bool neon = false;
    bool neon_dot = false;
};
const CpuFeatures& cpu_features();

// Highest ISA the CPU supports.
Isa best_isa();

// The table for `isa`, or nullptr when this build/CPU cannot run it.
const Kernels* kernels_for(Isa isa);

// Parse "scalar" | "avx2" | "avx512" | "amx" | "neon"; returns false on an unknown name.
bool parse_isa(const char* name, Isa* out);

// The active table. Initialised on first use from the CPU and the
// QUANTKIT_ISA environment variable (a cap: asking for more than the CPU has
// gives the CPU's best).
const Kernels& kernels();

// Re-select the active table, capped at `cap` (used by QUANTKIT_ISA and by
// tests that run every ISA in one process). Returns the table now active.
const Kernels& select_isa(Isa cap);

}  // namespace qk
