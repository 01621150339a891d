"""Plain-Python twin of the compiled ``nasgen.space._kernel``: same functions, same outputs.

The tests compare every function here with its compiled counterpart, array for
array. Setting ``NASGEN_PURE_PYTHON=1`` makes the library use this module, so
nasgen still runs (slowly) where the extension is missing or being debugged.

The contract, shared by both implementations:

* A *chain graph* covers ``kd`` dimensions (1 for a single dimension, K for a
  square space). Its states are size tuples, its edges ``u -> dst`` carry the
  size after the convolution (``conv``) and the number ``m`` of (kernel,
  stride) pairs that produce it; ``dst`` is the state after the pool. A
  state's edges are contiguous and sorted by ``conv``.
* Pairs of an edge are ordered by stride, then kernel.
* ``g[r, u]`` counts chains of exactly r layers from u to an end state, as W
  little-endian uint64 limbs. ``cum[r-1, e]`` is the inclusive prefix, over
  the edges of e's state, of ``m_e * g[r-1, dst_e]``.
* Unranking rank rho at state u with r layers left: the edge is the first
  with ``cum > rho``; ``rho -= cum`` of the previous edge; the pair index is
  ``rho % m`` and the rest of the chain gets ``rho // m``.
* An edge's pairs come from the rules (always, when ``edge_pairs`` is empty), or from the explicit table
  ``pair_kernel/pair_stride[edge_pairs[e] : edge_pairs[e] + m]`` where
  ``edge_pairs[e] >= 0``.
* Outputs are arrays allocated (and zero-filled) by the caller.
* Randomness: splitmix64; a number below a W-limb bound is drawn by masked
  rejection, limbs below the top one first, lowest first.
"""

from __future__ import annotations

import numpy as np

MASK64 = (1 << 64) - 1


def _k_interval(x, y, s, rules):
    kmin, kmax, _, _, relation, floor_mode = rules
    lo = max(1, kmin)
    hi = kmax
    if relation == 0:
        lo = max(lo, s + 1)
    elif relation == 1:
        lo = max(lo, s)
    for xd, yd in zip(x, y):
        hi = min(hi, xd)
        if floor_mode:
            lo = max(lo, xd - yd * s + 1)
            hi = min(hi, xd - (yd - 1) * s)
        else:
            kk = xd - (yd - 1) * s
            lo = max(lo, kk)
            hi = min(hi, kk)
    return lo, hi


def _pairs(x, y, rules):
    """All (k, s) mapping x to y in every dimension, in (stride, kernel) order."""
    _, _, smin, smax, _, _ = rules
    out = []
    for s in range(max(1, smin), min(min(x), smax) + 1):
        lo, hi = _k_interval(x, y, s, rules)
        out.extend((k, s) for k in range(lo, hi + 1))
    return out


def pair_count(x, y, rules):
    return len(_pairs(list(x), list(y), rules))


def pair_at(x, y, rules, j):
    pairs = _pairs(list(x), list(y), rules)
    return pairs[j] if j < len(pairs) else (0, 0)


def _window(size, k, s, floor_mode):
    if k > size or (not floor_mode and (size - k) % s):
        return 0
    return (size - k) // s + 1


def list_pairs(x, y, rules, kernel_out, stride_out):
    total, cap = 0, len(kernel_out)
    for xi, yi in zip(x, y):
        pairs = _pairs(list(xi), list(yi), rules)
        if total + len(pairs) > cap:
            return -1
        for k, s in pairs:
            kernel_out[total], stride_out[total] = k, s
            total += 1
    return total


def build_dimension_graph(size_in, size_out, pool_k, pool_s, rules, edge_ptr_out, conv_out, dst_out, mult_out):
    floor_mode = rules[5]
    e = 0
    for x in range(1, size_in + 1):
        edge_ptr_out[x - 1] = e
        for y in range(1, x + 1):
            m = pair_count([x], [y], rules)
            if m == 0:
                continue
            v = _window(y, pool_k, pool_s, floor_mode) if pool_k > 0 else y
            if v == 0 or v < size_out:
                continue
            conv_out[e], dst_out[e], mult_out[e] = y, v - 1, m
            e += 1
    edge_ptr_out[size_in] = e
    return e


def joint_edges(x, pool_k, pool_s, rules):
    kmin, kmax, smin, smax, relation, floor_mode = rules
    out = {}
    xmin = min(x)
    for s in range(max(1, smin), min(xmin, smax) + 1):
        lo = max(1, kmin)
        if relation == 0:
            lo = max(lo, s + 1)
        elif relation == 1:
            lo = max(lo, s)
        for k in range(lo, min(xmin, kmax) + 1):
            ys, vs = [], []
            for d, xd in enumerate(x):
                y = _window(int(xd), k, s, floor_mode)
                v = y if y == 0 or pool_k[d] == 0 else _window(y, int(pool_k[d]), int(pool_s[d]), floor_mode)
                if v == 0:
                    break
                ys.append(y)
                vs.append(v)
            else:
                key = tuple(ys)
                if key in out:
                    out[key][1] += 1
                else:
                    out[key] = [tuple(vs), 1]
    return out


def _to_limbs(value, W):
    return [(value >> (64 * i)) & MASK64 for i in range(W)]


def _from_limbs(limbs):
    return sum(int(v) << (64 * i) for i, v in enumerate(limbs))


def count_table(edge_ptr, edge_dst, edge_mult, ends, g_out):
    R, S, W = g_out.shape
    g = [[0] * S for _ in range(R)]
    for u in ends:
        g[0][int(u)] = 1
    for r in range(1, R):
        for u in range(S):
            g[r][u] = sum(
                int(edge_mult[e]) * g[r - 1][int(edge_dst[e])] for e in range(edge_ptr[u], edge_ptr[u + 1])
            )
    limit = 1 << (64 * W)
    overflow = any(v >= limit for row in g for v in row)
    for r in range(R):
        for u in range(S):
            g_out[r, u] = _to_limbs(g[r][u] % limit, W)
    return overflow


def cumulative_weights(edge_ptr, edge_dst, edge_mult, g, cum_out):
    R, _, W = g.shape
    for r in range(1, R):
        for u in range(len(edge_ptr) - 1):
            total = 0
            for e in range(edge_ptr[u], edge_ptr[u + 1]):
                total += int(edge_mult[e]) * _from_limbs(g[r - 1, edge_dst[e]])
                cum_out[r - 1, e] = _to_limbs(total, W)


def _edge_pair(graph, rules, u, e, j):
    p = int(graph.edge_pairs[e]) if len(graph.edge_pairs) else -1
    if p >= 0:
        return int(graph.pair_kernel[p + j]), int(graph.pair_stride[p + j])
    return pair_at(graph.sizes[u].tolist(), graph.edge_conv[e].tolist(), rules, j)


def _unrank_chain(graph, cum, rules, u, L, rank, kd, kernel_out, stride_out, dim0):
    edge_ptr, edge_dst, edge_mult = graph.edge_ptr, graph.edge_dst, graph.edge_mult
    for step in range(L):
        r = L - step
        edges = range(edge_ptr[u], edge_ptr[u + 1])
        e = next(e for e in edges if _from_limbs(cum[r - 1, e]) > rank)
        if e > edge_ptr[u]:
            rank -= _from_limbs(cum[r - 1, e - 1])
        rank, j = divmod(rank, int(edge_mult[e]))
        k, s = _edge_pair(graph, rules, u, e, j)
        for d in range(kd):
            kernel_out[step, dim0 + d] = k
            stride_out[step, dim0 + d] = s
        u = int(edge_dst[e])


def unrank_batch(graph, rules, components, cum, layers, ranks, kernel_out, stride_out):
    for i in range(ranks.shape[0]):
        for c in range(len(components.start)):
            _unrank_chain(graph, cum, rules, int(components.start[c]), int(layers[i]), _from_limbs(ranks[i, c]),
                          int(components.kd[c]), kernel_out[i], stride_out[i], int(components.dim0[c]))


class _SplitMix:
    def __init__(self, state):
        self.state = int(state) & MASK64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, bound_limbs):
        bound = [int(v) for v in bound_limbs]
        W = len(bound)
        top = W - 1
        while top > 0 and bound[top] == 0:
            top -= 1
        mask = (1 << bound[top].bit_length()) - 1
        value = _from_limbs(bound)
        while True:
            limbs = [self.next() for _ in range(top)]
            limbs.append(self.next() & mask)
            out = _from_limbs(limbs)
            if out < value:
                return out


def _mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def draw_state(seed, index):
    """The generator state of draw ``index`` of the stream keyed by ``seed`` (limbs.h's nasgen_draw_state)."""
    return _mix64(int(seed) ^ _mix64((int(index) * 0x9E3779B97F4A7C15 + 0xD1B54A32D192ED03) & MASK64))


def sample_batch(graph, rules, components, cum, g, layer_values, layer_cum, seed, first, layers_out, kernel_out,
                 stride_out):
    totals = [_from_limbs(row) for row in layer_cum]
    for i in range(len(layers_out)):
        rng = _SplitMix(draw_state(seed, (int(first) + i) & MASK64))
        t = rng.below(layer_cum[-1])
        li = next(li for li, c in enumerate(totals) if c > t)
        L = int(layer_values[li])
        layers_out[i] = L
        for c in range(len(components.start)):
            start = int(components.start[c])
            rank = rng.below(g[L, start])
            _unrank_chain(graph, cum, rules, start, L, rank, int(components.kd[c]),
                          kernel_out[i], stride_out[i], int(components.dim0[c]))


def layer_domain_tables(graph, rules, g, start, feasible, pairs_out, size_in_out, size_conv_out, size_out_out):
    N = pairs_out.shape[0]
    now = {int(start)}
    for l in range(N):
        nxt = set()
        for u in sorted(now):
            for e in range(graph.edge_ptr[u], graph.edge_ptr[u + 1]):
                v = int(graph.edge_dst[e])
                if not any(feasible[L] and g[L - l - 1, v].any() for L in range(l + 1, N + 1)):
                    continue
                nxt.add(v)
                for d in range(graph.sizes.shape[1]):
                    size_in_out[l, d, graph.sizes[u, d]] = 1
                    size_conv_out[l, d, graph.edge_conv[e, d]] = 1
                    size_out_out[l, d, graph.sizes[v, d]] = 1
                for j in range(int(graph.edge_mult[e])):
                    k, s = _edge_pair(graph, rules, u, e, j)
                    pairs_out[l, k, s] = 1
        now = nxt


def encode_bits(layers, kernel, stride, bit_width, out):
    M, N, K = kernel.shape
    nbits = N * K * 2 * bit_width + N
    bits = np.zeros((M, ((nbits + 63) // 64) * 64), dtype=np.uint8)
    for i in range(M):
        p = 0
        for l in range(N):
            for d in range(K):
                if l < layers[i]:
                    for b in range(bit_width):
                        bits[i, p + b] = (int(kernel[i, l, d]) >> b) & 1
                        bits[i, p + bit_width + b] = (int(stride[i, l, d]) >> b) & 1
                p += 2 * bit_width
        for l in range(min(int(layers[i]), N)):
            bits[i, p + l] = 1
    packed = np.packbits(bits, axis=1, bitorder="little")
    out[...] = np.ascontiguousarray(packed).view("<u8")


def adjacent_distance_sum(vectors):
    return sum(
        bin(int(a) ^ int(b)).count("1") for i in range(len(vectors) - 1) for a, b in zip(vectors[i], vectors[i + 1])
    )


def hamming_matrix(vectors, out):
    M = len(vectors)
    for i in range(M):
        for j in range(M):
            out[i, j] = sum(bin(int(a) ^ int(b)).count("1") for a, b in zip(vectors[i], vectors[j]))


def chain_costs(layers, kernel, stride, input_shape, pool_k, pool_s, options, params_out, flops_out):
    width, in_channels, classes, batch_norm, logits, pool_cost, out_elements = (int(v) for v in options)
    for i in range(kernel.shape[0]):
        x = [int(v) for v in input_shape]
        p = f = 0
        for l in range(int(layers[i])):
            c = in_channels if l == 0 else width
            prod_k = prod_y = prod_yk = 1
            for d in range(len(x)):
                k, s = int(kernel[i, l, d]), int(stride[i, l, d])
                y = (x[d] - k) // s + 1
                prod_k, prod_y, prod_yk = prod_k * k, prod_y * y, prod_yk * y * k
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
                for d in range(len(x)):
                    x[d] = (x[d] - int(pool_k[d])) // int(pool_s[d]) + 1
                    prod_z *= x[d]
                f += pool_cost * prod_z * width
        if logits:
            features = out_elements * (width if layers[i] > 0 else in_channels)
            p += features * classes + classes
            f += 2 * features * classes + classes
        params_out[i] = p
        flops_out[i] = f
