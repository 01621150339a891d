# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled kernels of nasgen: chain graphs, exact counts, unranking, sampling, bit-vectors.

Only ``nasgen._backend`` calls this module; it validates dtypes and shapes.
Every function has a plain-Python twin in ``nasgen/_pykernel.py`` with the
same signature and the same output, bit for bit (the tests compare them).

Vocabulary (see ``nasgen/_pykernel.py`` for the full contract):

* A *chain graph* has states (sizes: one per dimension it covers, ``kd`` of
  them) and edges ``state --(m pairs)--> dst`` where ``conv`` is the size
  after the convolution and ``dst`` the state after the pool. Edges of a state
  are contiguous (CSR ``edge_ptr``) and sorted by ``conv``.
* ``g[r, u]`` (W uint64 limbs) counts the chains of exactly r layers from
  state u to an end state; ``cum[r-1, e]`` is the inclusive prefix over u's
  edges of ``m_e * g[r-1, dst_e]``.
* Unranking a chain rank at a state: pick the edge by ``cum``; within the
  edge the pair index is ``rank % m`` and the rest of the chain gets
  ``rank // m``. Pairs of an edge are ordered by stride, then kernel.
"""

from libc.stdint cimport uint64_t, int64_t
from libc.string cimport memset, memcpy
from libc.stdlib cimport malloc, free
import numpy as np
cimport numpy as cnp

cnp.import_array()

cdef extern from "limbs.h" nogil:
    int limbs_muladd(uint64_t *acc, const uint64_t *a, uint64_t m, int W)
    int u64_muladd(uint64_t *acc, uint64_t a, uint64_t m)
    int limbs_add(uint64_t *dst, const uint64_t *a, const uint64_t *b, int W)
    void limbs_sub(uint64_t *a, const uint64_t *b, int W)
    int limbs_cmp(const uint64_t *a, const uint64_t *b, int W)
    int limbs_is_zero(const uint64_t *a, int W)
    uint64_t limbs_divmod_small(uint64_t *a, uint64_t d, int W)
    uint64_t nasgen_splitmix64(uint64_t *state)
    void limbs_random_below(uint64_t *out, const uint64_t *bound, int W, uint64_t *state)
    int nasgen_popcount64(uint64_t x)
    int64_t nasgen_adjacent_sum(const uint64_t *v, int64_t M, int64_t words)
    void nasgen_hamming(const uint64_t *v, int64_t M, int64_t words, int64_t *out)

cdef struct Rules:
    int64_t kmin
    int64_t kmax
    int64_t smin
    int64_t smax
    int relation      # 0: k > s, 1: k >= s, 2: any
    int floor_mode    # 0: exact, 1: floor


cdef inline int64_t _max(int64_t a, int64_t b) noexcept nogil:
    return a if a > b else b


cdef inline int64_t _min(int64_t a, int64_t b) noexcept nogil:
    return a if a < b else b


cdef inline int64_t _floordiv(int64_t a, int64_t b) noexcept nogil:
    # floor division for b > 0 and any sign of a
    if a >= 0:
        return a // b
    return -((-a + b - 1) // b)


cdef Rules _rules(tuple rules):
    cdef Rules R
    R.kmin, R.kmax, R.smin, R.smax, R.relation, R.floor_mode = rules
    return R


cdef inline int64_t _k_interval(const int64_t *x, const int64_t *y, int kd, int64_t s,
                                const Rules *R, int64_t *lo_out) noexcept nogil:
    """Kernels k with (k, s) mapping x[d] to y[d] in every dimension: [lo, hi]."""
    cdef int64_t lo = _max(1, R.kmin)
    cdef int64_t hi = R.kmax
    cdef int64_t kk
    cdef int d
    if R.relation == 0:
        lo = _max(lo, s + 1)
    elif R.relation == 1:
        lo = _max(lo, s)
    for d in range(kd):
        hi = _min(hi, x[d])
        if R.floor_mode:
            lo = _max(lo, x[d] - y[d] * s + 1)
            hi = _min(hi, x[d] - (y[d] - 1) * s)
        else:
            kk = x[d] - (y[d] - 1) * s
            lo = _max(lo, kk)
            hi = _min(hi, kk)
    lo_out[0] = lo
    return hi


cdef inline int _exact_stride_interval(int64_t x, int64_t y, const Rules *R,
                                       int64_t *slo, int64_t *shi) noexcept nogil:
    """Exact rounding, one dimension: the strides s of pairs mapping x to y form an interval."""
    cdef int64_t lo = _max(1, R.smin)
    cdef int64_t hi = _min(x, R.smax)
    cdef int64_t t = y - 1
    cdef int64_t kl = _max(1, R.kmin)
    if t == 0:
        # k = x
        if x < kl or x > R.kmax:
            return 0
        if R.relation == 0:
            hi = _min(hi, x - 1)
        elif R.relation == 1:
            hi = _min(hi, x)
    else:
        # k = x - t*s must lie in [kl, kmax]
        if x - kl < 0:
            return 0
        if R.relation == 0:
            hi = _min(hi, (x - 1) // y)
        elif R.relation == 1:
            hi = _min(hi, x // y)
        # With kl == 1 the relation's bound is the tighter one ((x-1)//y and x//y are both
        # <= (x-1)//t), so the division below is only needed otherwise: it is the hot loop.
        if kl > 1 or R.relation == 2:
            hi = _min(hi, (x - kl) // t)
        if x > R.kmax:
            lo = _max(lo, (x - R.kmax + t - 1) // t)
    slo[0] = lo
    shi[0] = hi
    return hi >= lo


cdef inline int64_t _pair_count(const int64_t *x, const int64_t *y, int kd, const Rules *R) noexcept nogil:
    cdef int64_t slo, shi, s, lo, hi, total = 0, xmin = x[0]
    cdef int d
    if kd == 1 and not R.floor_mode:
        if _exact_stride_interval(x[0], y[0], R, &slo, &shi):
            return shi - slo + 1
        return 0
    for d in range(1, kd):
        xmin = _min(xmin, x[d])
    for s in range(_max(1, R.smin), _min(xmin, R.smax) + 1):
        hi = _k_interval(x, y, kd, s, R, &lo)
        if hi >= lo:
            total += hi - lo + 1
    return total


cdef inline void _pair_at(const int64_t *x, const int64_t *y, int kd, const Rules *R, int64_t j,
                          int64_t *k_out, int64_t *s_out) noexcept nogil:
    """The j-th (stride, kernel)-ordered pair mapping x to y."""
    cdef int64_t slo, shi, s, lo, hi, xmin = x[0], n
    cdef int d
    if kd == 1 and not R.floor_mode:
        _exact_stride_interval(x[0], y[0], R, &slo, &shi)
        s_out[0] = slo + j
        k_out[0] = x[0] - (y[0] - 1) * (slo + j)
        return
    for d in range(1, kd):
        xmin = _min(xmin, x[d])
    for s in range(_max(1, R.smin), _min(xmin, R.smax) + 1):
        hi = _k_interval(x, y, kd, s, R, &lo)
        if hi >= lo:
            n = hi - lo + 1
            if j < n:
                s_out[0] = s
                k_out[0] = lo + j
                return
            j -= n
    s_out[0] = 0
    k_out[0] = 0


cdef inline int64_t _window(int64_t size, int64_t k, int64_t s, int floor_mode) noexcept nogil:
    if k > size:
        return 0
    if not floor_mode and (size - k) % s:
        return 0
    return (size - k) // s + 1


def pair_count(const int64_t[::1] x, const int64_t[::1] y, tuple rules):
    """Number of (kernel, stride) pairs mapping sizes x to y in every dimension."""
    cdef Rules R = _rules(rules)
    return _pair_count(&x[0], &y[0], x.shape[0], &R)


def pair_at(const int64_t[::1] x, const int64_t[::1] y, tuple rules, int64_t j):
    """The j-th pair (kernel, stride) mapping x to y, pairs ordered by stride then kernel."""
    cdef Rules R = _rules(rules)
    cdef int64_t k, s
    _pair_at(&x[0], &y[0], x.shape[0], &R, j, &k, &s)
    return int(k), int(s)


def build_dimension_graph(int64_t size_in, int64_t size_out, int64_t pool_k, int64_t pool_s, tuple rules):
    """Chain graph of one dimension: states are the sizes 1..size_in (state x-1).

    Args:
        size_in: the input size I_d.
        size_out: the output size O_d; edges into smaller sizes (which can never
            grow back) are left out.
        pool_k, pool_s: the pool after every conv (pool_k == 0: none).
        rules: (kmin, kmax, smin, smax, relation_code, floor_mode).

    Returns:
        (sizes (S,1) int64, edge_ptr (S+1,) int64, edge_conv (E,1) int64,
        edge_dst (E,) int64, edge_mult (E,) int64); edges of a state sorted
        by conv size ascending.
    """
    cdef Rules R = _rules(rules)
    cdef int64_t S = size_in, x, y, s, lo, hi, v, e = 0, cap
    ptr_a = np.zeros(S + 1, dtype=np.int64)
    cdef int64_t[::1] ptr = ptr_a
    cdef int64_t[::1] mult_by_y = np.zeros(S + 2, dtype=np.int64)
    cdef int64_t xx[1]
    cdef int64_t yy[1]
    cap = S * (S + 1) // 2
    conv_a = np.empty(cap, dtype=np.int64)
    dst_a = np.empty(cap, dtype=np.int64)
    mult_a = np.empty(cap, dtype=np.int64)
    cdef int64_t[::1] conv = conv_a
    cdef int64_t[::1] dst = dst_a
    cdef int64_t[::1] mult = mult_a
    with nogil:
        for x in range(1, S + 1):
            ptr[x - 1] = e
            xx[0] = x
            if R.floor_mode:
                for y in range(1, x + 1):
                    mult_by_y[y] = 0
                for s in range(_max(1, R.smin), _min(x, R.smax) + 1):
                    for y in range(1, (x - 1) // s + 2):
                        yy[0] = y
                        hi = _k_interval(xx, yy, 1, s, &R, &lo)
                        if hi >= lo:
                            mult_by_y[y] += hi - lo + 1
            # a conv output below O_d can never reach O_d (sizes only shrink)
            for y in range(_max(1, size_out), x + 1):
                if R.floor_mode:
                    v = mult_by_y[y]
                else:
                    yy[0] = y
                    v = _pair_count(xx, yy, 1, &R)
                if v == 0:
                    continue
                if pool_k > 0:
                    s = _window(y, pool_k, pool_s, R.floor_mode)
                    if s == 0:
                        continue
                else:
                    s = y
                if s < size_out:
                    continue
                conv[e] = y
                dst[e] = s - 1
                mult[e] = v
                e += 1
        ptr[S] = e
    sizes = np.arange(1, S + 1, dtype=np.int64).reshape(S, 1)
    return (sizes, ptr_a, conv_a[:e].reshape(e, 1), dst_a[:e], mult_a[:e])


def joint_edges(const int64_t[::1] x, const int64_t[::1] pool_k, const int64_t[::1] pool_s, tuple rules):
    """Edges of one joint (square) state: every (k, s) shared by all dimensions.

    Returns a dict mapping the conv-size tuple to (pooled-size tuple, pair count).
    """
    cdef Rules R = _rules(rules)
    cdef int kd = x.shape[0], d
    cdef int64_t s, k, xmin = x[0], lo, y, v
    cdef bint ok
    out = {}
    for d in range(1, kd):
        xmin = _min(xmin, x[d])
    ys = [0] * kd
    vs = [0] * kd
    for s in range(_max(1, R.smin), _min(xmin, R.smax) + 1):
        lo = _max(1, R.kmin)
        if R.relation == 0:
            lo = _max(lo, s + 1)
        elif R.relation == 1:
            lo = _max(lo, s)
        for k in range(lo, _min(xmin, R.kmax) + 1):
            ok = True
            for d in range(kd):
                y = _window(x[d], k, s, R.floor_mode)
                if y == 0:
                    ok = False
                    break
                if pool_k[d] > 0:
                    v = _window(y, pool_k[d], pool_s[d], R.floor_mode)
                    if v == 0:
                        ok = False
                        break
                else:
                    v = y
                ys[d] = y
                vs[d] = v
            if ok:
                key = tuple(ys)
                if key in out:
                    out[key][1] += 1
                else:
                    out[key] = [tuple(vs), 1]
    return out


def count_table(const int64_t[::1] edge_ptr, const int64_t[::1] edge_dst, const int64_t[::1] edge_mult,
                const int64_t[::1] ends, int max_layers, int W):
    """g[r, u] = number of chains of exactly r layers from u to an end state, in W limbs.

    Returns (g of shape (max_layers+1, S, W) uint64, overflowed: bool).
    """
    cdef int64_t S = edge_ptr.shape[0] - 1, u, e, i
    cdef int r
    cdef int overflow = 0
    g_a = np.zeros((max_layers + 1, S, W), dtype=np.uint64)
    cdef uint64_t[:, :, ::1] g = g_a
    for i in range(ends.shape[0]):
        g[0, ends[i], 0] = 1
    cdef uint64_t *g1 = &g[0, 0, 0]
    with nogil:
        if W == 1:
            for r in range(1, max_layers + 1):
                for u in range(S):
                    for e in range(edge_ptr[u], edge_ptr[u + 1]):
                        overflow |= u64_muladd(&g1[r * S + u], g1[(r - 1) * S + edge_dst[e]], <uint64_t>edge_mult[e])
        else:
          for r in range(1, max_layers + 1):
            for u in range(S):
                for e in range(edge_ptr[u], edge_ptr[u + 1]):
                    if not limbs_is_zero(&g[r - 1, edge_dst[e], 0], W):
                        overflow |= limbs_muladd(&g[r, u, 0], &g[r - 1, edge_dst[e], 0], <uint64_t>edge_mult[e], W)
    return g_a, bool(overflow)


def cumulative_weights(const int64_t[::1] edge_ptr, const int64_t[::1] edge_dst, const int64_t[::1] edge_mult,
                       const uint64_t[:, :, ::1] g):
    """cum[r-1, e] = sum over the edges e' <= e of e's state of m_e' * g[r-1, dst_e'] (W limbs)."""
    cdef int64_t S = edge_ptr.shape[0] - 1, E = edge_dst.shape[0], u, e
    cdef int R_ = g.shape[0] - 1, W = g.shape[2], r
    cum_a = np.zeros((R_, E, W), dtype=np.uint64)
    cdef uint64_t[:, :, ::1] cum = cum_a
    with nogil:
        for r in range(1, R_ + 1):
            for u in range(S):
                for e in range(edge_ptr[u], edge_ptr[u + 1]):
                    if e > edge_ptr[u]:
                        memcpy(&cum[r - 1, e, 0], &cum[r - 1, e - 1, 0], W * sizeof(uint64_t))
                    limbs_muladd(&cum[r - 1, e, 0], &g[r - 1, edge_dst[e], 0], <uint64_t>edge_mult[e], W)
    return cum_a


cdef struct Graph:
    const int64_t *sizes       # (S, KD)
    const int64_t *edge_ptr
    const int64_t *edge_conv   # (E, KD)
    const int64_t *edge_dst
    const int64_t *edge_mult
    const uint64_t *cum        # (R, E, W)
    int64_t E
    int KD
    int W


cdef inline void _unrank_chain(const Graph *G, const Rules *R, int64_t u, int L, uint64_t *rank, int kd,
                               int64_t *kernel_out, int64_t *stride_out, int K, int dim0) noexcept nogil:
    """Write the chain of ``rank`` (destroyed) from state u: layer l at kernel_out[l*K + d]."""
    cdef int W = G.W, step, r, d
    cdef int64_t lo, hi, mid, e, k, s
    cdef uint64_t j
    cdef const uint64_t *cum_r
    cdef uint64_t rk, m
    if W == 1:
        # The common case, kept free of multi-limb calls and 128-bit division.
        rk = rank[0]
        for step in range(L):
            r = L - step
            cum_r = G.cum + (<int64_t>(r - 1)) * G.E
            lo = G.edge_ptr[u]
            hi = G.edge_ptr[u + 1] - 1
            while lo < hi:
                mid = (lo + hi) >> 1
                if cum_r[mid] > rk:
                    hi = mid
                else:
                    lo = mid + 1
            e = lo
            if e > G.edge_ptr[u]:
                rk -= cum_r[e - 1]
            m = <uint64_t>G.edge_mult[e]
            if m == 1:
                j = 0
            else:
                j = rk % m
                rk = rk // m
            _pair_at(G.sizes + u * G.KD, G.edge_conv + e * G.KD, kd, R, <int64_t>j, &k, &s)
            for d in range(kd):
                kernel_out[step * K + dim0 + d] = k
                stride_out[step * K + dim0 + d] = s
            u = G.edge_dst[e]
        return
    for step in range(L):
        r = L - step
        cum_r = G.cum + (<int64_t>(r - 1)) * G.E * W
        lo = G.edge_ptr[u]
        hi = G.edge_ptr[u + 1] - 1
        # first edge whose inclusive cumulative weight exceeds rank
        while lo < hi:
            mid = (lo + hi) >> 1
            if limbs_cmp(cum_r + mid * W, rank, W) > 0:
                hi = mid
            else:
                lo = mid + 1
        e = lo
        if e > G.edge_ptr[u]:
            limbs_sub(rank, cum_r + (e - 1) * W, W)
        j = limbs_divmod_small(rank, <uint64_t>G.edge_mult[e], W)
        _pair_at(G.sizes + u * G.KD, G.edge_conv + e * G.KD, kd, R, <int64_t>j, &k, &s)
        for d in range(kd):
            kernel_out[step * K + dim0 + d] = k
            stride_out[step * K + dim0 + d] = s
        u = G.edge_dst[e]


cdef Graph _graph(const int64_t[:, ::1] sizes, const int64_t[::1] edge_ptr, const int64_t[:, ::1] edge_conv,
                  const int64_t[::1] edge_dst, const int64_t[::1] edge_mult, const uint64_t[:, :, ::1] cum):
    cdef Graph G
    G.sizes = &sizes[0, 0]
    G.edge_ptr = &edge_ptr[0]
    G.edge_conv = &edge_conv[0, 0] if edge_conv.shape[0] else NULL
    G.edge_dst = &edge_dst[0] if edge_dst.shape[0] else NULL
    G.edge_mult = &edge_mult[0] if edge_mult.shape[0] else NULL
    G.cum = &cum[0, 0, 0] if cum.shape[1] else NULL
    G.E = edge_dst.shape[0]
    G.KD = sizes.shape[1]
    G.W = cum.shape[2]
    return G


def unrank_batch(graph, tuple rules, const int64_t[::1] comp_start, const int64_t[::1] comp_kd,
                 const int64_t[::1] comp_dim0, const int64_t[::1] layers, const uint64_t[:, :, ::1] ranks,
                 int64_t[:, :, ::1] kernel_out, int64_t[:, :, ::1] stride_out):
    """Per sample i and component c, write the chain of rank ranks[i, c] with layers[i] layers.

    ``graph`` is (sizes, edge_ptr, edge_conv, edge_dst, edge_mult, cum). Output
    arrays (M, N, K) must be zero-filled by the caller; rows past layers[i]
    stay zero. ``ranks`` is copied, not modified.
    """
    cdef Rules R = _rules(rules)
    cdef Graph G = _graph(graph[0], graph[1], graph[2], graph[3], graph[4], graph[5])
    cdef int64_t M = ranks.shape[0], i
    cdef int C = comp_start.shape[0], c, W = G.W
    cdef int N = kernel_out.shape[1], K = kernel_out.shape[2]
    cdef uint64_t *buf = <uint64_t *>malloc(W * sizeof(uint64_t))
    if buf == NULL:
        raise MemoryError()
    try:
        with nogil:
            for i in range(M):
                for c in range(C):
                    memcpy(buf, &ranks[i, c, 0], W * sizeof(uint64_t))
                    _unrank_chain(&G, &R, comp_start[c], <int>layers[i], buf, <int>comp_kd[c],
                                  &kernel_out[i, 0, 0], &stride_out[i, 0, 0], K, <int>comp_dim0[c])
    finally:
        free(buf)


def sample_batch(graph, tuple rules, const int64_t[::1] comp_start, const int64_t[::1] comp_kd,
                 const int64_t[::1] comp_dim0, const uint64_t[:, :, ::1] g, const int64_t[::1] layer_values,
                 const uint64_t[:, ::1] layer_cum, uint64_t seed, int64_t[::1] layers_out,
                 int64_t[:, :, ::1] kernel_out, int64_t[:, :, ::1] stride_out):
    """Draw len(layers_out) architectures uniformly and independently (splitmix64 from ``seed``).

    Per sample: a uniform rank below the total picks the number of layers
    from ``layer_cum`` (inclusive prefix of per-L counts, WT limbs), then each
    component draws a uniform rank below its own chain count g[L, start] and
    unranks it. Returns the generator state after the last draw.
    """
    cdef Rules R = _rules(rules)
    cdef Graph G = _graph(graph[0], graph[1], graph[2], graph[3], graph[4], graph[5])
    cdef int64_t M = layers_out.shape[0], i
    cdef int C = comp_start.shape[0], c, W = G.W, WT = layer_cum.shape[1], nL = layer_cum.shape[0], li, L
    cdef int K = kernel_out.shape[2]
    cdef uint64_t state = seed
    cdef uint64_t *buf = <uint64_t *>malloc((W + WT) * sizeof(uint64_t))
    cdef uint64_t *tbuf = buf + W
    if buf == NULL:
        raise MemoryError()
    try:
        with nogil:
            for i in range(M):
                limbs_random_below(tbuf, &layer_cum[nL - 1, 0], WT, &state)
                li = 0
                while limbs_cmp(&layer_cum[li, 0], tbuf, WT) <= 0:
                    li += 1
                L = <int>layer_values[li]
                layers_out[i] = L
                for c in range(C):
                    limbs_random_below(buf, &g[L, comp_start[c], 0], W, &state)
                    _unrank_chain(&G, &R, comp_start[c], L, buf, <int>comp_kd[c],
                                  &kernel_out[i, 0, 0], &stride_out[i, 0, 0], K, <int>comp_dim0[c])
    finally:
        free(buf)
    return state


def encode_bits(const int64_t[::1] layers, const int64_t[:, :, ::1] kernel, const int64_t[:, :, ::1] stride,
                int bit_width):
    """Canonical bit-vectors packed little-endian into uint64 words, shape (M, words).

    Bit order: for l < N, d < K: kernel[l][d] (bit_width bits, LSB first), then
    stride[l][d]; zeros for l >= layers; then N activation bits.
    """
    cdef int64_t M = kernel.shape[0], i, p, v
    cdef int N = kernel.shape[1], K = kernel.shape[2], l, d, b
    cdef int64_t nbits = <int64_t>N * K * 2 * bit_width + N
    cdef int64_t words = (nbits + 63) // 64
    out_a = np.zeros((M, words), dtype=np.uint64)
    cdef uint64_t[:, ::1] out = out_a
    with nogil:
        for i in range(M):
            p = 0
            for l in range(N):
                for d in range(K):
                    if l < layers[i]:
                        v = kernel[i, l, d]
                        for b in range(bit_width):
                            if (v >> b) & 1:
                                out[i, (p + b) >> 6] |= (<uint64_t>1) << ((p + b) & 63)
                        v = stride[i, l, d]
                        for b in range(bit_width):
                            if (v >> b) & 1:
                                out[i, (p + bit_width + b) >> 6] |= (<uint64_t>1) << ((p + bit_width + b) & 63)
                    p += 2 * bit_width
            for l in range(N):
                if l < layers[i]:
                    out[i, (p + l) >> 6] |= (<uint64_t>1) << ((p + l) & 63)
    return out_a


def adjacent_distance_sum(const uint64_t[:, ::1] vectors):
    """Sum over m of popcount(v[m] XOR v[m+1]) (an exact integer)."""
    cdef int64_t M = vectors.shape[0], words = vectors.shape[1], total = 0
    if M < 2 or words == 0:
        return 0
    with nogil:
        total = nasgen_adjacent_sum(&vectors[0, 0], M, words)
    return total


def hamming_matrix(const uint64_t[:, ::1] vectors):
    """All pairwise Hamming distances, shape (M, M) int64."""
    cdef int64_t M = vectors.shape[0], words = vectors.shape[1]
    out_a = np.zeros((M, M), dtype=np.int64)
    cdef int64_t[:, ::1] out = out_a
    if M >= 2 and words > 0:
        with nogil:
            nasgen_hamming(&vectors[0, 0], M, words, &out[0, 0])
    return out_a
