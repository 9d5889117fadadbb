/* metal_shim.h: just enough of the Metal Shading Language, mapped onto standard C++17, for ringgen's
 * generated .metal sources to compile (and run on CPU threads) with g++ or clang++ on Linux.
 *
 * What this proves and what it does not: a .metal file that compiles against this shim uses only the
 * Metal constructs listed here, with the types, argument counts and memory orders given here. It is
 * checked against the shim, not compiled by Apple's compiler: Metal-specific rules the shim does not
 * model (address-space conversions, which attributes a parameter may carry, resource limits) are not
 * checked by C++; ringgen.metal_shim.check_metal adds a textual check of the attributes.
 *
 * Only what ringgen's Metal dialect emits is modelled, and deliberately no more: a generated file that
 * strays outside the subset (a memory order Metal lacks, a function Metal does not have, a 64-bit
 * atomic) fails to compile here instead of passing by accident.
 */
#ifndef RINGGEN_METAL_SHIM_H
#define RINGGEN_METAL_SHIM_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

/* The Metal compiler defines this; the shared types header selects its Metal branch with it. */
#define __METAL_VERSION__ 300
#define RG_METAL_SHIM 1

/* Address spaces. On the CPU every pointer is an ordinary pointer; `constant` keeps its immutability. */
#define device
#define threadgroup
#define thread
#define constant const
/* `kernel void f(...)`: an ordinary function on the CPU, called by the dispatch loop of the driver. */
#define kernel

/* Metal's parameter attributes ([[buffer(n)]], [[thread_position_in_grid]], ...) have no meaning to a C++
 * compiler, which warns that it ignores them; check_metal validates them against Metal's list instead. */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wunknown-attributes"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wattributes"
#endif

/* Metal has no double: naming the type is an error here too (a floating literal is still a double in
 * C++, where Metal makes it a float; the dialect keeps f64 out of kernels, see dialect_metal.py). */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wkeyword-macro"
#endif
#define double rg_metal_has_no_double

/* Metal's scalar spellings. glibc may already declare uint/ushort with the same types, which C++ allows. */
typedef unsigned char uchar;
typedef unsigned short ushort;
typedef unsigned int uint;
typedef unsigned long ulong;
static_assert(sizeof(long) == 8 && sizeof(ulong) == 8, "Metal's long/ulong are 64-bit: the shim needs LP64");
static_assert(sizeof(int) == 4 && sizeof(float) == 4, "Metal's int and float are 32-bit");

namespace metal {

/* ---- atomics --------------------------------------------------------------------------------------
 * Metal offers atomic_int, atomic_uint (and atomic_bool, atomic_float on device memory) with
 * memory_order_relaxed only; no 64-bit atomic types outside Apple9-family ulong min/max, which ringgen
 * does not use. std::atomic_ref is C++20, so the shim uses the GCC/Clang __atomic builtins it is built
 * on; they act on the plain word in place, as Metal's atomics act on device memory. */
enum memory_order { memory_order_relaxed = __ATOMIC_RELAXED };

template <typename T> struct atomic {
    static_assert(std::is_same<T, int>::value || std::is_same<T, uint>::value,
                  "Metal atomics exist for int and uint only (no 64-bit atomics)");
    T value_;
};
typedef atomic<int> atomic_int;
typedef atomic<uint> atomic_uint;
static_assert(sizeof(atomic_uint) == 4 && alignof(atomic_uint) == 4, "atomic_uint is one 32-bit word");

/* Each function takes the same arguments as Metal's: object, operand(s), memory order(s). The order
 * parameter has the enum type above, so only memory_order_relaxed is accepted. */
template <typename T> inline T atomic_load_explicit(const volatile atomic<T>* obj, memory_order order) {
    return __atomic_load_n(&obj->value_, order);
}
template <typename T, typename U>
inline void atomic_store_explicit(volatile atomic<T>* obj, U desired, memory_order order) {
    __atomic_store_n(&obj->value_, static_cast<T>(desired), order);
}
template <typename T, typename U>
inline T atomic_exchange_explicit(volatile atomic<T>* obj, U desired, memory_order order) {
    return __atomic_exchange_n(&obj->value_, static_cast<T>(desired), order);
}
template <typename T>
inline bool atomic_compare_exchange_weak_explicit(volatile atomic<T>* obj, thread T* expected, T desired,
                                                  memory_order success, memory_order failure) {
    return __atomic_compare_exchange_n(&obj->value_, expected, desired, true, success, failure);
}
template <typename T, typename U>
inline T atomic_fetch_add_explicit(volatile atomic<T>* obj, U operand, memory_order order) {
    return __atomic_fetch_add(&obj->value_, static_cast<T>(operand), order);
}
template <typename T, typename U>
inline T atomic_fetch_sub_explicit(volatile atomic<T>* obj, U operand, memory_order order) {
    return __atomic_fetch_sub(&obj->value_, static_cast<T>(operand), order);
}
template <typename T, typename U>
inline T atomic_fetch_and_explicit(volatile atomic<T>* obj, U operand, memory_order order) {
    return __atomic_fetch_and(&obj->value_, static_cast<T>(operand), order);
}
template <typename T, typename U>
inline T atomic_fetch_or_explicit(volatile atomic<T>* obj, U operand, memory_order order) {
    return __atomic_fetch_or(&obj->value_, static_cast<T>(operand), order);
}
template <typename T, typename U>
inline T atomic_fetch_xor_explicit(volatile atomic<T>* obj, U operand, memory_order order) {
    return __atomic_fetch_xor(&obj->value_, static_cast<T>(operand), order);
}
/* Metal has native atomic min/max on int and uint; a CAS loop gives the same result on the CPU. */
template <typename T, typename U>
inline T atomic_fetch_min_explicit(volatile atomic<T>* obj, U operand, memory_order order) {
    T want = static_cast<T>(operand);
    T old = __atomic_load_n(&obj->value_, order);
    while (want < old && !__atomic_compare_exchange_n(&obj->value_, &old, want, true, order, order)) {
    }
    return old;
}
template <typename T, typename U>
inline T atomic_fetch_max_explicit(volatile atomic<T>* obj, U operand, memory_order order) {
    T want = static_cast<T>(operand);
    T old = __atomic_load_n(&obj->value_, order);
    while (want > old && !__atomic_compare_exchange_n(&obj->value_, &old, want, true, order, order)) {
    }
    return old;
}

/* ---- barriers ------------------------------------------------------------------------------------ */
enum class mem_flags { mem_none = 0, mem_device = 1, mem_threadgroup = 2, mem_texture = 4 };
/* The CPU dispatch loop runs one thread per threadgroup, so a threadgroup barrier only orders memory. */
inline void threadgroup_barrier(mem_flags) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

/* ---- math ----------------------------------------------------------------------------------------
 * float only: Metal has no double. Each function exists in metal:: (fast by default on Apple's compiler)
 * and metal::precise:: (IEEE-accurate within Metal's stated ULPs); ringgen calls the precise ones, and
 * on the CPU both are the C library's float functions. Overloads take float exactly, so a double
 * argument is an ambiguity or a narrowing error, not a silent promotion. */
#define RG_SHIM_UNARY(name, impl)                                                                       \
    inline float name(float x) { return impl(x); }
#define RG_SHIM_BINARY(name, impl)                                                                      \
    inline float name(float x, float y) { return impl(x, y); }
#define RG_SHIM_MATH(X1, X2)                                                                            \
    X1(sqrt, std::sqrt) X1(rsqrt, 1.0f / std::sqrt) X1(exp, std::exp) X1(exp2, std::exp2)              \
    X1(log, std::log) X1(log2, std::log2) X1(log10, std::log10) X1(sin, std::sin) X1(cos, std::cos)     \
    X1(tan, std::tan) X1(asin, std::asin) X1(acos, std::acos) X1(atan, std::atan) X1(sinh, std::sinh)   \
    X1(cosh, std::cosh) X1(tanh, std::tanh) X1(floor, std::floor) X1(ceil, std::ceil)                 \
    X1(round, std::round) X1(trunc, std::trunc) X1(fabs, std::fabs) X1(abs, std::fabs)                \
    X2(pow, std::pow) X2(atan2, std::atan2) X2(fmod, std::fmod) X2(fmin, std::fmin)                   \
    X2(fmax, std::fmax) X2(copysign, std::copysign) X2(hypot, std::hypot)

RG_SHIM_MATH(RG_SHIM_UNARY, RG_SHIM_BINARY)
inline float fma(float a, float b, float c) { return std::fma(a, b, c); }
inline bool isnan(float x) { return std::isnan(x); }
inline bool isinf(float x) { return std::isinf(x); }
inline bool isfinite(float x) { return std::isfinite(x); }

namespace precise {
RG_SHIM_MATH(RG_SHIM_UNARY, RG_SHIM_BINARY)
inline float fma(float a, float b, float c) { return std::fma(a, b, c); }
}  // namespace precise

#undef RG_SHIM_MATH
#undef RG_SHIM_BINARY
#undef RG_SHIM_UNARY

/* Integer abs/min/max/clamp, as Metal's <metal_integer> and <metal_common> declare them. */
inline int abs(int x) { return x < 0 ? -x : x; }
inline long abs(long x) { return x < 0 ? -x : x; }
template <typename T> inline T min(T a, T b) { return b < a ? b : a; }
template <typename T> inline T max(T a, T b) { return a < b ? b : a; }
template <typename T> inline T clamp(T x, T lo, T hi) { return min(max(x, lo), hi); }

}  // namespace metal

/* as_type<T>(x): Metal's bit reinterpretation, an operator of the language rather than a metal:: name. */
template <typename To, typename From> inline To as_type(From from) {
    static_assert(sizeof(To) == sizeof(From), "as_type needs types of the same size");
    To to;
    std::memcpy(&to, &from, sizeof(To));
    return to;
}

#endif /* RINGGEN_METAL_SHIM_H */
