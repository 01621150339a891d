# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled kernels of nasgen: chain graphs, exact counts, unranking, sampling, bit-vectors.

Only ``nasgen.space.backend`` calls this module; it validates dtypes and shapes.
Every function has a plain-Python twin in ``nasgen/space/pykernel.py`` with the
same signature and the same output, bit for bit (the tests compare them).

Vocabulary (see ``nasgen/space/pykernel.py`` for the full contract):

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
* An edge's pairs come from the rules (always, when ``edge_pairs`` is empty), or, where ``edge_pairs[e] >= 0``, from
  the explicit table ``pair_kernel/pair_stride[edge_pairs[e] : edge_pairs[e] + m]``
  (a restricted layer position of a constrained space).

Graphs, rules and components arrive as the named tuples of
``nasgen.space.backend`` (``ChainGraph``, ``Rules``, ``Components``). Every
output array is allocated by the caller.
"""

from libc.stdint cimport uint64_t, int64_t, int32_t, uint8_t
from libc.string cimport memcpy, memset
from libc.stdlib cimport malloc, calloc, free

cdef extern from "limbs.h" nogil:
    int limbs_muladd(uint64_t *acc, const uint64_t *a, uint64_t m, int W)
    int u64_muladd(uint64_t *acc, uint64_t a, uint64_t m)
    void limbs_sub(uint64_t *a, const uint64_t *b, int W)
    int limbs_cmp(const uint64_t *a, const uint64_t *b, int W)
    int limbs_is_zero(const uint64_t *a, int W)
    uint64_t limbs_divmod_small(uint64_t *a, uint64_t d, int W)
    void limbs_random_below(uint64_t *out, const uint64_t *bound, int W, uint64_t *state)
    uint64_t nasgen_draw_state(uint64_t seed, uint64_t index)
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


cdef Rules _rules(rules):
    """The C view of a ``nasgen.space.backend.Rules`` named tuple."""
    cdef Rules R
    R.kmin = rules.kernel_min
    R.kmax = rules.kernel_max
    R.smin = rules.stride_min
    R.smax = rules.stride_max
    R.relation = rules.relation
    R.floor_mode = rules.floor_mode
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


cdef inline int64_t _write_pairs(const int64_t *x, const int64_t *y, int kd, const Rules *R,
                                 int64_t *k_out, int64_t *s_out) noexcept nogil:
    """Write every (k, s) mapping x to y in (stride, kernel) order; returns how many."""
    cdef int64_t slo, shi, s, k, lo, hi, xmin = x[0], n = 0
    cdef int d
    if kd == 1 and not R.floor_mode:
        if _exact_stride_interval(x[0], y[0], R, &slo, &shi):
            for s in range(slo, shi + 1):
                k_out[n] = x[0] - (y[0] - 1) * s
                s_out[n] = s
                n += 1
        return n
    for d in range(1, kd):
        xmin = _min(xmin, x[d])
    for s in range(_max(1, R.smin), _min(xmin, R.smax) + 1):
        hi = _k_interval(x, y, kd, s, R, &lo)
        for k in range(lo, hi + 1):
            k_out[n] = k
            s_out[n] = s
            n += 1
    return n


def pair_count(const int64_t[::1] x, const int64_t[::1] y, rules):
    """Number of (kernel, stride) pairs mapping sizes x to y in every dimension."""
    cdef Rules R = _rules(rules)
    return _pair_count(&x[0], &y[0], x.shape[0], &R)


def pair_at(const int64_t[::1] x, const int64_t[::1] y, rules, int64_t j):
    """The j-th pair (kernel, stride) mapping x to y, pairs ordered by stride then kernel."""
    cdef Rules R = _rules(rules)
    cdef int64_t k, s
    _pair_at(&x[0], &y[0], x.shape[0], &R, j, &k, &s)
    return int(k), int(s)


def list_pairs(const int64_t[:, ::1] x, const int64_t[:, ::1] y, rules, int64_t[::1] kernel_out,
               int64_t[::1] stride_out):
    """The pairs of every row: those mapping x[i] to y[i], rows concatenated, each in (stride, kernel) order.

    The caller sizes the outputs to the sum of ``pair_count(x[i], y[i])``;
    returns how many pairs were written, or -1 (nothing trusted) if they do
    not fit.
    """
    cdef Rules R = _rules(rules)
    cdef int64_t n = x.shape[0], i, total = 0, cap = kernel_out.shape[0]
    cdef int kd = x.shape[1]
    with nogil:
        for i in range(n):
            if total + _pair_count(&x[i, 0], &y[i, 0], kd, &R) > cap:
                total = -1
                break
            total += _write_pairs(&x[i, 0], &y[i, 0], kd, &R, &kernel_out[total], &stride_out[total])
    return total


def build_dimension_graph(int64_t size_in, int64_t size_out, int64_t pool_k, int64_t pool_s, rules,
                          int64_t[::1] edge_ptr_out, int64_t[::1] conv_out, int64_t[::1] dst_out,
                          int64_t[::1] mult_out):
    """Chain graph of one dimension: states are the sizes 1..size_in (state x-1).

    Args:
        size_in: the input size I_d.
        size_out: the output size O_d; edges into smaller sizes (which can never
            grow back) are left out.
        pool_k, pool_s: the pool after every conv (pool_k == 0: none).
        rules: a ``Rules`` named tuple.
        edge_ptr_out: (size_in + 1,) CSR offsets, written.
        conv_out, dst_out, mult_out: (size_in * (size_in + 1) // 2,) capacity
            for the edges' conv size, destination state and pair count.

    Returns:
        E, the number of edges written; a state's edges are sorted by conv size.
    """
    cdef Rules R = _rules(rules)
    cdef int64_t S = size_in, x, y, s, lo, hi, v, e = 0
    cdef int64_t xx[1]
    cdef int64_t yy[1]
    cdef int64_t *mult_by_y = <int64_t *>malloc((S + 2) * sizeof(int64_t))
    if mult_by_y == NULL:
        raise MemoryError()
    try:
        with nogil:
            for x in range(1, S + 1):
                edge_ptr_out[x - 1] = e
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
                    conv_out[e] = y
                    dst_out[e] = s - 1
                    mult_out[e] = v
                    e += 1
            edge_ptr_out[S] = e
    finally:
        free(mult_by_y)
    return e


def joint_edges(const int64_t[::1] x, const int64_t[::1] pool_k, const int64_t[::1] pool_s, rules):
    """Edges of one joint (square) state: every (k, s) shared by all dimensions.

    Returns a dict mapping the conv-size tuple to [pooled-size tuple, pair count].
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
                const int64_t[::1] ends, uint64_t[:, :, ::1] g_out):
    """g[r, u] = number of chains of exactly r layers from u to an end state, in W limbs.

    ``g_out`` (max_layers + 1, S, W) must be zero-filled by the caller.
    Returns True if some count overflowed W limbs (then g_out is not trusted).
    """
    cdef int64_t S = edge_ptr.shape[0] - 1, u, e, i
    cdef int r, max_layers = g_out.shape[0] - 1, W = g_out.shape[2]
    cdef int overflow = 0
    for i in range(ends.shape[0]):
        g_out[0, ends[i], 0] = 1
    if S == 0:
        return False
    cdef uint64_t *g1 = &g_out[0, 0, 0]
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
                        if not limbs_is_zero(&g_out[r - 1, edge_dst[e], 0], W):
                            overflow |= limbs_muladd(&g_out[r, u, 0], &g_out[r - 1, edge_dst[e], 0],
                                                     <uint64_t>edge_mult[e], W)
    return bool(overflow)


def cumulative_weights(const int64_t[::1] edge_ptr, const int64_t[::1] edge_dst, const int64_t[::1] edge_mult,
                       const uint64_t[:, :, ::1] g, uint64_t[:, :, ::1] cum_out):
    """cum[r-1, e] = sum over the edges e' <= e of e's state of m_e' * g[r-1, dst_e'] (W limbs).

    ``cum_out`` (max_layers, E, W) must be zero-filled by the caller.
    """
    cdef int64_t S = edge_ptr.shape[0] - 1, u, e
    cdef int R_ = g.shape[0] - 1, W = g.shape[2], r
    with nogil:
        for r in range(1, R_ + 1):
            for u in range(S):
                for e in range(edge_ptr[u], edge_ptr[u + 1]):
                    if e > edge_ptr[u]:
                        memcpy(&cum_out[r - 1, e, 0], &cum_out[r - 1, e - 1, 0], W * sizeof(uint64_t))
                    limbs_muladd(&cum_out[r - 1, e, 0], &g[r - 1, edge_dst[e], 0], <uint64_t>edge_mult[e], W)


cdef struct Graph:
    const int64_t *sizes       # (S, KD)
    const int64_t *edge_ptr
    const int64_t *edge_conv   # (E, KD)
    const int64_t *edge_dst
    const int64_t *edge_mult
    const int64_t *edge_pairs  # (E,): -1, or the edge's first row in the explicit pair table; NULL: no table
    const int64_t *pair_kernel
    const int64_t *pair_stride
    const uint64_t *cum        # (R, E, W)
    int64_t E
    int KD
    int W


cdef inline void _edge_pair(const Graph *G, const Rules *R, int64_t u, int64_t e, int64_t j, int kd,
                            int64_t *k, int64_t *s) noexcept nogil:
    """The j-th pair of edge e (from state u): from the explicit table, or computed from the rules."""
    cdef int64_t p = G.edge_pairs[e] if G.edge_pairs != NULL else -1
    if p >= 0:
        k[0] = G.pair_kernel[p + j]
        s[0] = G.pair_stride[p + j]
    else:
        _pair_at(G.sizes + u * G.KD, G.edge_conv + e * G.KD, kd, R, j, k, s)


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
            _edge_pair(G, R, u, e, <int64_t>j, kd, &k, &s)
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
        _edge_pair(G, R, u, e, <int64_t>j, kd, &k, &s)
        for d in range(kd):
            kernel_out[step * K + dim0 + d] = k
            stride_out[step * K + dim0 + d] = s
        u = G.edge_dst[e]


cdef Graph _graph(graph, const uint64_t[:, :, ::1] cum):
    """The C view of a ``ChainGraph`` and its prefix weights; the caller keeps both alive."""
    cdef const int64_t[:, ::1] sizes = graph.sizes
    cdef const int64_t[::1] edge_ptr = graph.edge_ptr
    cdef const int64_t[:, ::1] edge_conv = graph.edge_conv
    cdef const int64_t[::1] edge_dst = graph.edge_dst
    cdef const int64_t[::1] edge_mult = graph.edge_mult
    cdef const int64_t[::1] edge_pairs = graph.edge_pairs
    cdef const int64_t[::1] pair_kernel = graph.pair_kernel
    cdef const int64_t[::1] pair_stride = graph.pair_stride
    cdef Graph G
    G.sizes = &sizes[0, 0] if sizes.shape[0] else NULL
    G.edge_ptr = &edge_ptr[0]
    G.edge_conv = &edge_conv[0, 0] if edge_conv.shape[0] else NULL
    G.edge_dst = &edge_dst[0] if edge_dst.shape[0] else NULL
    G.edge_mult = &edge_mult[0] if edge_mult.shape[0] else NULL
    G.edge_pairs = &edge_pairs[0] if edge_pairs.shape[0] else NULL
    G.pair_kernel = &pair_kernel[0] if pair_kernel.shape[0] else NULL
    G.pair_stride = &pair_stride[0] if pair_stride.shape[0] else NULL
    G.cum = &cum[0, 0, 0] if cum.shape[0] and cum.shape[1] else NULL
    G.E = edge_dst.shape[0]
    G.KD = sizes.shape[1]
    G.W = cum.shape[2]
    return G


def unrank_batch(graph, rules, components, const uint64_t[:, :, ::1] cum, const int64_t[::1] layers,
                 const uint64_t[:, :, ::1] ranks, int64_t[:, :, ::1] kernel_out, int64_t[:, :, ::1] stride_out):
    """Per sample i and component c, write the chain of rank ranks[i, c] with layers[i] layers.

    ``graph`` is a ``ChainGraph``, ``cum`` its prefix weights, ``components``
    a ``Components``. Output arrays (M, N, K) must be zero-filled by the
    caller; rows past layers[i] stay zero. ``ranks`` is copied, not modified.
    """
    cdef Rules R = _rules(rules)
    cdef Graph G = _graph(graph, cum)
    cdef const int64_t[::1] comp_start = components.start
    cdef const int64_t[::1] comp_kd = components.kd
    cdef const int64_t[::1] comp_dim0 = components.dim0
    cdef int64_t M = ranks.shape[0], i
    cdef int C = comp_start.shape[0], c, W = G.W
    cdef int K = kernel_out.shape[2]
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


def sample_batch(graph, rules, components, const uint64_t[:, :, ::1] cum, const uint64_t[:, :, ::1] g,
                 const int64_t[::1] layer_values, const uint64_t[:, ::1] layer_cum, uint64_t seed, uint64_t first,
                 int64_t[::1] layers_out, int64_t[:, :, ::1] kernel_out, int64_t[:, :, ::1] stride_out):
    """Draw len(layers_out) architectures uniformly and independently: draws first, first + 1, ... of ``seed``.

    Draw i starts a splitmix64 sequence at ``nasgen_draw_state(seed, i)``
    (counter-based), so it depends on (seed, i) alone, and ranges of one
    batch can run on separate threads (the GIL is released). Per draw: a
    uniform rank below the total picks the number of layers from
    ``layer_cum`` (inclusive prefix of per-L counts, WT limbs), then each
    component draws a uniform rank below its own chain count g[L, start] and
    unranks it. Outputs must be zero-filled by the caller.
    """
    cdef Rules R = _rules(rules)
    cdef Graph G = _graph(graph, cum)
    cdef const int64_t[::1] comp_start = components.start
    cdef const int64_t[::1] comp_kd = components.kd
    cdef const int64_t[::1] comp_dim0 = components.dim0
    cdef int64_t M = layers_out.shape[0], i
    cdef int C = comp_start.shape[0], c, W = G.W, WT = layer_cum.shape[1], nL = layer_cum.shape[0], li, L
    cdef int K = kernel_out.shape[2]
    cdef uint64_t state
    cdef uint64_t *buf = <uint64_t *>malloc((W + WT) * sizeof(uint64_t))
    if buf == NULL:
        raise MemoryError()
    cdef uint64_t *tbuf = buf + W
    try:
        with nogil:
            for i in range(M):
                state = nasgen_draw_state(seed, first + <uint64_t>i)
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


cdef inline void _mark_pairs(const int64_t *x, const int64_t *y, int kd, const Rules *R, int32_t *diff,
                             uint8_t *marks, int64_t X) noexcept nogil:
    """Record every (k, s) of x -> y: s-rows of ``diff`` (X + 2 wide) get +1 at k=lo and -1 past hi."""
    cdef int64_t slo, shi, s, lo, hi, xmin = x[0], kfloor = _max(1, R.kmin)
    cdef int d
    if kd == 1 and not R.floor_mode:
        if _exact_stride_interval(x[0], y[0], R, &slo, &shi):
            for s in range(slo, shi + 1):
                marks[(x[0] - (y[0] - 1) * s) * (X + 1) + s] = 1
        return
    for d in range(1, kd):
        xmin = _min(xmin, x[d])
    for s in range(_max(1, R.smin), _min(xmin, R.smax) + 1):
        # In one dimension the largest kernel x - (y - 1) s only falls as s grows.
        if kd == 1 and y[0] > 1 and x[0] - (y[0] - 1) * s < kfloor:
            break
        hi = _k_interval(x, y, kd, s, R, &lo)
        if hi >= lo:
            diff[s * (X + 2) + lo] += 1
            diff[s * (X + 2) + hi + 1] -= 1


def layer_domain_tables(graph, rules, const uint64_t[:, :, ::1] g, int64_t start, const uint8_t[::1] feasible,
                        uint8_t[:, :, ::1] pairs_out, uint8_t[:, :, ::1] size_in_out,
                        uint8_t[:, :, ::1] size_conv_out, uint8_t[:, :, ::1] size_out_out):
    """Mark the values each layer position takes on some chain from ``start`` of a feasible length.

    An edge is used at position l when its state is reached from ``start`` by
    l used edges and a chain of r = L - l - 1 more layers leaves its
    destination (g[r, dst] != 0) for some L > l with feasible[L].

    Args:
        graph: a ``ChainGraph`` (its component's states and edges).
        rules: the ``Rules`` of the rule-computed edges.
        g: the chain counts (N + 1, S, W).
        start: the component's start state.
        feasible: (N + 1,) 1 where the whole space has architectures of L layers.
        pairs_out: (N, X + 1, X + 1) zero-filled; [l, k, s] set for a used pair.
        size_in_out, size_conv_out, size_out_out: (N, KD, X + 1) zero-filled;
            [l, d, v] set for a size entering, after the conv of, or leaving layer l.
    """
    cdef Rules R = _rules(rules)
    cdef const int64_t[:, ::1] sizes = graph.sizes
    cdef const int64_t[::1] edge_ptr = graph.edge_ptr
    cdef const int64_t[:, ::1] edge_conv = graph.edge_conv
    cdef const int64_t[::1] edge_dst = graph.edge_dst
    cdef const int64_t[::1] edge_mult = graph.edge_mult
    cdef const int64_t[::1] edge_pairs = graph.edge_pairs
    cdef const int64_t[::1] pair_kernel = graph.pair_kernel
    cdef const int64_t[::1] pair_stride = graph.pair_stride
    cdef int64_t S = edge_ptr.shape[0] - 1, X = pairs_out.shape[1] - 1, u, e, v, p, s, k
    cdef int N = pairs_out.shape[0], KD = sizes.shape[1], W = g.shape[2], l, L, d
    cdef bint useful
    cdef uint8_t *reach = <uint8_t *>calloc(2 * S + 2, 1)
    cdef int32_t *diff = <int32_t *>calloc((X + 2) * (X + 2), sizeof(int32_t))
    cdef uint8_t *now
    cdef uint8_t *nxt
    cdef uint8_t *marks
    cdef int32_t run
    if reach == NULL or diff == NULL:
        free(reach)
        free(diff)
        raise MemoryError()
    try:
        with nogil:
            reach[start] = 1
            for l in range(N):
                now = reach + (l % 2) * (S + 1)
                nxt = reach + ((l + 1) % 2) * (S + 1)
                memset(nxt, 0, S + 1)
                memset(diff, 0, (X + 2) * (X + 2) * sizeof(int32_t))
                marks = &pairs_out[l, 0, 0]
                for u in range(S):
                    if not now[u]:
                        continue
                    for e in range(edge_ptr[u], edge_ptr[u + 1]):
                        v = edge_dst[e]
                        useful = False
                        for L in range(l + 1, N + 1):
                            if feasible[L] and not limbs_is_zero(&g[L - l - 1, v, 0], W):
                                useful = True
                                break
                        if not useful:
                            continue
                        nxt[v] = 1
                        for d in range(KD):
                            size_in_out[l, d, sizes[u, d]] = 1
                            size_conv_out[l, d, edge_conv[e, d]] = 1
                            size_out_out[l, d, sizes[v, d]] = 1
                        if edge_pairs.shape[0] and edge_pairs[e] >= 0:
                            for p in range(edge_pairs[e], edge_pairs[e] + edge_mult[e]):
                                marks[pair_kernel[p] * (X + 1) + pair_stride[p]] = 1
                        else:
                            _mark_pairs(&sizes[u, 0], &edge_conv[e, 0], KD, &R, diff, marks, X)
                for s in range(X + 1):
                    run = 0
                    for k in range(X + 1):
                        run += diff[s * (X + 2) + k]
                        if run > 0:
                            marks[k * (X + 1) + s] = 1
    finally:
        free(reach)
        free(diff)


cdef inline void _put_bits(uint64_t *row, int64_t p, uint64_t v, int width) noexcept nogil:
    """OR the ``width`` low bits of v into the bit string ``row`` at bit p (a value may straddle two words)."""
    cdef int off = p & 63
    if width < 64:
        v &= ((<uint64_t>1) << width) - 1
    if v == 0:
        return
    row[p >> 6] |= v << off
    if off and off + width > 64:
        row[(p >> 6) + 1] |= v >> (64 - off)


def encode_bits(const int64_t[::1] layers, const int64_t[:, :, ::1] kernel, const int64_t[:, :, ::1] stride,
                int bit_width, uint64_t[:, ::1] out):
    """Canonical bit-vectors packed little-endian into uint64 words, written to ``out`` (M, words).

    ``out`` must be zero-filled by the caller, with words = ceil((2 N K
    bit_width + N) / 64). Bit order: for l < N, d < K: kernel[l][d]
    (bit_width bits, LSB first), then stride[l][d]; zeros for l >= layers;
    then N activation bits. Each value is written a word at a time, not a bit at a time.
    """
    cdef int64_t M = kernel.shape[0], i, p
    cdef int N = kernel.shape[1], K = kernel.shape[2], l, d
    cdef uint64_t *row
    if M == 0 or out.shape[1] == 0:
        return
    with nogil:
        for i in range(M):
            row = &out[i, 0]
            p = 0
            for l in range(N):
                for d in range(K):
                    if l < layers[i]:
                        _put_bits(row, p, <uint64_t>kernel[i, l, d], bit_width)
                        _put_bits(row, p + bit_width, <uint64_t>stride[i, l, d], bit_width)
                    p += 2 * bit_width
            for l in range(N):
                if l < layers[i]:
                    row[(p + l) >> 6] |= (<uint64_t>1) << ((p + l) & 63)


def adjacent_distance_sum(const uint64_t[:, ::1] vectors):
    """Sum over m of popcount(v[m] XOR v[m+1]) (an exact integer)."""
    cdef int64_t M = vectors.shape[0], words = vectors.shape[1], total = 0
    if M < 2 or words == 0:
        return 0
    with nogil:
        total = nasgen_adjacent_sum(&vectors[0, 0], M, words)
    return total


def hamming_matrix(const uint64_t[:, ::1] vectors, int64_t[:, ::1] out):
    """All pairwise Hamming distances, written to ``out`` (M, M), zero-filled by the caller."""
    cdef int64_t M = vectors.shape[0], words = vectors.shape[1]
    if M >= 2 and words > 0:
        with nogil:
            nasgen_hamming(&vectors[0, 0], M, words, &out[0, 0])


def chain_costs(const int64_t[::1] layers, const int64_t[:, :, ::1] kernel, const int64_t[:, :, ::1] stride,
                const int64_t[::1] input_shape, const int64_t[::1] pool_k, const int64_t[::1] pool_s,
                const int64_t[::1] options, int64_t[::1] params_out, int64_t[::1] flops_out):
    """Parameters and FLOPs of the ``chain`` model for each architecture (see ``nasgen.constraints.language.chain_costs``).

    ``options`` is (width, in_channels, num_classes, batch_norm, logits_head,
    pool_cost_per_output, output_elements): pool_cost_per_output < 0 means no
    pool; output_elements is the product of the output shape. The caller
    guarantees that no figure passes int64 (``nasgen.constraints.language`` checks a bound).
    """
    cdef int64_t M = kernel.shape[0], i, c, k, s, y, prod_k, prod_y, prod_yk, prod_z, p, f, features
    cdef int K = kernel.shape[2], l, d
    cdef int64_t width = options[0], in_channels = options[1], classes = options[2]
    cdef int64_t batch_norm = options[3], logits = options[4], pool_cost = options[5], out_elements = options[6]
    cdef int64_t *x = <int64_t *>malloc(K * sizeof(int64_t))
    if x == NULL:
        raise MemoryError()
    try:
        with nogil:
            for i in range(M):
                for d in range(K):
                    x[d] = input_shape[d]
                p = 0
                f = 0
                for l in range(<int>layers[i]):
                    c = in_channels if l == 0 else width
                    prod_k = 1
                    prod_y = 1
                    prod_yk = 1
                    for d in range(K):
                        k = kernel[i, l, d]
                        s = stride[i, l, d]
                        y = (x[d] - k) // s + 1
                        prod_k *= k
                        prod_y *= y
                        prod_yk *= y * k
                        x[d] = y
                    p += prod_k * c * width
                    f += 2 * prod_yk * c * width
                    if batch_norm:
                        p += 2 * width
                        f += 4 * prod_y * width + 2 * width
                    else:
                        p += width
                        f += 2 * prod_y * width
                    if pool_cost >= 0:
                        prod_z = 1
                        for d in range(K):
                            x[d] = (x[d] - pool_k[d]) // pool_s[d] + 1
                            prod_z *= x[d]
                        f += pool_cost * prod_z * width
                if logits:
                    features = out_elements * (width if layers[i] > 0 else in_channels)
                    p += features * classes + classes
                    f += 2 * features * classes + classes
                params_out[i] = p
                flops_out[i] = f
    finally:
        free(x)
