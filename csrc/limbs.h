/* Fixed-width multi-limb unsigned integers (little-endian uint64 limbs) and a
 * seeded splitmix64 generator, for exact counting and unranking in _kernel.pyx.
 *
 * Counts of real search spaces overflow 64 bits, so every count, weight and
 * rank is a W-limb number; W is chosen per space (1 in the common case).
 */
#ifndef NASGEN_LIMBS_H
#define NASGEN_LIMBS_H

#include <stdint.h>

typedef unsigned __int128 nasgen_u128;

/* acc += a * m; returns 1 on overflow past W limbs. */
static inline int limbs_muladd(uint64_t *acc, const uint64_t *a, uint64_t m, int W) {
    nasgen_u128 carry = 0;
    for (int i = 0; i < W; i++) {
        nasgen_u128 t = (nasgen_u128)a[i] * m + acc[i] + carry;
        acc[i] = (uint64_t)t;
        carry = t >> 64;
    }
    return carry != 0;
}

/* One-limb acc += a * m; returns 1 on overflow. */
static inline int u64_muladd(uint64_t *acc, uint64_t a, uint64_t m) {
    uint64_t p;
    int o = __builtin_mul_overflow(a, m, &p);
    o |= __builtin_add_overflow(*acc, p, acc);
    return o;
}

/* dst = a + b; returns 1 on overflow. */
static inline int limbs_add(uint64_t *dst, const uint64_t *a, const uint64_t *b, int W) {
    uint64_t carry = 0;
    for (int i = 0; i < W; i++) {
        uint64_t s = a[i] + carry;
        uint64_t c1 = s < carry;
        uint64_t t = s + b[i];
        uint64_t c2 = t < s;
        dst[i] = t;
        carry = c1 | c2;
    }
    return carry != 0;
}

/* a -= b (requires a >= b). */
static inline void limbs_sub(uint64_t *a, const uint64_t *b, int W) {
    uint64_t borrow = 0;
    for (int i = 0; i < W; i++) {
        uint64_t bi = b[i] + borrow;
        uint64_t nb = (bi < borrow) | (a[i] < bi);
        a[i] -= bi;
        borrow = nb;
    }
}

static inline int limbs_cmp(const uint64_t *a, const uint64_t *b, int W) {
    for (int i = W - 1; i >= 0; i--) {
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    }
    return 0;
}

static inline int limbs_is_zero(const uint64_t *a, int W) {
    for (int i = 0; i < W; i++) if (a[i]) return 0;
    return 1;
}

/* a /= d in place; returns a % d. */
static inline uint64_t limbs_divmod_small(uint64_t *a, uint64_t d, int W) {
    nasgen_u128 rem = 0;
    for (int i = W - 1; i >= 0; i--) {
        nasgen_u128 cur = (rem << 64) | a[i];
        a[i] = (uint64_t)(cur / d);
        rem = cur % d;
    }
    return (uint64_t)rem;
}

static inline uint64_t nasgen_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* The generator state of draw `index` of the stream keyed by `seed` (counter-based: a draw
 * depends on (seed, index) only, so a batch split into ranges run by any number of threads
 * gives the same draws). The index is spread by the golden-ratio increment and mixed before
 * it meets the seed, and the sum mixed again. */
static inline uint64_t nasgen_draw_state(uint64_t seed, uint64_t index) {
    return nasgen_mix64(seed ^ nasgen_mix64(index * 0x9E3779B97F4A7C15ULL + 0xD1B54A32D192ED03ULL));
}

static inline uint64_t nasgen_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* out = uniform integer in [0, bound) by masked rejection; bound > 0.
 * Limbs below the top one are drawn first, lowest first; the top limb is
 * masked to the bit length of bound's top limb. */
static inline void limbs_random_below(uint64_t *out, const uint64_t *bound, int W, uint64_t *state) {
    int top = W - 1;
    while (top > 0 && bound[top] == 0) top--;
    uint64_t hi = bound[top];
    uint64_t mask = hi;
    mask |= mask >> 1; mask |= mask >> 2; mask |= mask >> 4;
    mask |= mask >> 8; mask |= mask >> 16; mask |= mask >> 32;
    for (int i = top + 1; i < W; i++) out[i] = 0;
    for (;;) {
        for (int i = 0; i < top; i++) out[i] = nasgen_splitmix64(state);
        out[top] = nasgen_splitmix64(state) & mask;
        if (limbs_cmp(out, bound, W) < 0) return;
    }
}

static inline int nasgen_popcount64(uint64_t x) { return __builtin_popcountll(x); }

/* Distance loops, compiled twice on x86-64: with the POPCNT instruction and without
 * (the portable baseline lacks it and GCC then calls a slow software popcount);
 * the CPU is asked once at run time. */
#define NASGEN_ADJ_BODY                                                        \
    int64_t total = 0;                                                         \
    for (int64_t i = 0; i + 1 < M; i++) {                                      \
        const uint64_t *a = v + i * words, *b = a + words;                     \
        for (int64_t w = 0; w < words; w++) total += __builtin_popcountll(a[w] ^ b[w]); \
    }                                                                          \
    return total;

#define NASGEN_HAM_BODY                                                        \
    for (int64_t i = 0; i < M; i++) {                                          \
        const uint64_t *a = v + i * words;                                     \
        for (int64_t j = i + 1; j < M; j++) {                                  \
            const uint64_t *b = v + j * words;                                 \
            int64_t t = 0;                                                     \
            for (int64_t w = 0; w < words; w++) t += __builtin_popcountll(a[w] ^ b[w]); \
            out[i * M + j] = t;                                                \
            out[j * M + i] = t;                                                \
        }                                                                      \
    }

static int64_t nasgen_adj_generic(const uint64_t *v, int64_t M, int64_t words) { NASGEN_ADJ_BODY }
static void nasgen_ham_generic(const uint64_t *v, int64_t M, int64_t words, int64_t *out) { NASGEN_HAM_BODY }

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("popcnt")))
static int64_t nasgen_adj_popcnt(const uint64_t *v, int64_t M, int64_t words) { NASGEN_ADJ_BODY }
__attribute__((target("popcnt")))
static void nasgen_ham_popcnt(const uint64_t *v, int64_t M, int64_t words, int64_t *out) { NASGEN_HAM_BODY }
#define NASGEN_HAS_POPCNT() __builtin_cpu_supports("popcnt")
#else
#define nasgen_adj_popcnt nasgen_adj_generic
#define nasgen_ham_popcnt nasgen_ham_generic
#define NASGEN_HAS_POPCNT() 0
#endif

static inline int64_t nasgen_adjacent_sum(const uint64_t *v, int64_t M, int64_t words) {
    return NASGEN_HAS_POPCNT() ? nasgen_adj_popcnt(v, M, words) : nasgen_adj_generic(v, M, words);
}

static inline void nasgen_hamming(const uint64_t *v, int64_t M, int64_t words, int64_t *out) {
    if (NASGEN_HAS_POPCNT()) nasgen_ham_popcnt(v, M, words, out); else nasgen_ham_generic(v, M, words, out);
}

#endif
