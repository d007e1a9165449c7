/* Which instruction sets the kernels may use: what the CPU has, capped by
 * JARIP_ISA (so one machine can run and measure the narrower paths too). */
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* Whether this CPU has F16C. clang 14 does not know "f16c" in
 * __builtin_cpu_supports; where the compiler already targets F16C
 * (-march=native on such a CPU) the answer is known at compile time. */
#if defined(__F16C__)
#define JARIP_CPU_F16C() 1
#elif defined(__clang__)
#define JARIP_CPU_F16C() 0
#else
#define JARIP_CPU_F16C() __builtin_cpu_supports("f16c")
#endif

static int cpu_isa(void) {
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        JARIP_CPU_F16C())
        return ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && JARIP_CPU_F16C()) return ISA_AVX2;
#endif
    return ISA_SCALAR;
}

int kernel_isa_cap(void) {
    const char *cap = getenv("JARIP_ISA");
    if (!cap || !*cap) return ISA_AVX512;
    for (int i = ISA_SCALAR; i <= ISA_AVX512; i++)
        if (!strcmp(cap, kernel_isa_name(i))) return i;
    return -1;
}

int kernel_isa(void) {
    const int have = cpu_isa(), cap = kernel_isa_cap();
    return cap >= 0 && cap < have ? cap : have;
}

const char *kernel_isa_name(int isa) {
    switch (isa) {
    case ISA_SCALAR: return "scalar";
    case ISA_AVX2: return "avx2";
    case ISA_AVX512: return "avx512";
    default: return "?";
    }
}
