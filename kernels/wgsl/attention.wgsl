// attention.wgsl — variable-length prefill attention (FlashAttention varlen
// contract) for f32, f16, bf16 (DT): GQA/MQA, bottom-right causal / sliding
// window, logit softcap, optional f32 log-sum-exp.
//
// Work split: one workgroup of 64 threads per (query row, query head); rows
// are numbered token-major (token · Hq + head) on a 2-D grid (x ≤ 65535).
// Thread 0 finds the row's sequence by binary search in cu_seqlens_q and
// broadcasts it (workgroupUniformLoad). The visible keys [lo, hi) are walked
// in tiles of 64 with an online softmax (FlashAttention-2 style, never a
// score row in memory): each thread scores one key of the tile (q staged in
// workgroup memory, f32 dot product), the tile max and the probabilities go
// through workgroup memory, the running (max, sum) rescales the output once
// per tile, and each thread accumulates P·V for the head dims it owns
// (lid, lid + 64, lid + 128, lid + 192). Probabilities stay in f32. Rows
// with no visible key write 0 and lse = −inf.
//
// Limits: head_dim ≤ 256 (4 dims per thread; `supports()` refuses more),
// 64 invocations, ~1.8 KiB of workgroup memory; u32 indices (ops/ caps
// tensors at 2^31 − 1 elements). K/V are re-read per query row (no reuse
// across rows of a workgroup): simple and exact, not the fastest on GPUs.
//
// @const DT: u32 = 0 | 1 | 2

struct Params {
    heads_q: u32,
    heads_kv: u32,
    head_dim: u32,
    batch: u32,
    num_rows: u32,
    total_q: u32,
    q_off: u32,
    k_off: u32,
    v_off: u32,
    cuq_off: u32,
    cuk_off: u32,
    out_off: u32,
    lse_off: u32,
    has_lse: u32,
    window_left: i32,
    window_right: i32,
    scale: f32,
    softcap: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<u32>;
@group(0) @binding(2) var<storage, read> k: array<u32>;
@group(0) @binding(3) var<storage, read> v: array<u32>;
@group(0) @binding(4) var<storage, read> cu_q: array<i32>;
@group(0) @binding(5) var<storage, read> cu_k: array<i32>;
@group(0) @binding(6) var<storage, read_write> out: array<atomic<u32>>;
@group(0) @binding(7) var<storage, read_write> lse: array<u32>;

const WG: u32 = 64u;
const DIMS_PER_THREAD: u32 = 4u;

var<workgroup> q_sh: array<f32, 256>;
var<workgroup> s_sh: array<f32, 64>;
var<workgroup> p_sh: array<f32, 64>;
// q_start, seqlen_q, k_start, seqlen_k of the row's sequence.
var<workgroup> seq_sh: array<u32, 4>;

fn ld_q(i: u32) -> f32 {
    return decode(q[widx(i)], i);
}

fn ld_k(i: u32) -> f32 {
    return decode(k[widx(i)], i);
}

fn ld_v(i: u32) -> f32 {
    return decode(v[widx(i)], i);
}

fn st_out(i: u32, val: f32) {
    if (DT == DT_F32) {
        atomicStore(&out[i], bitcast<u32>(val));
        return;
    }
    let sh = (i & 1u) << 4u;
    atomicAnd(&out[i >> 1u], ~(0xffffu << sh));
    atomicOr(&out[i >> 1u], encode16(val) << sh);
}

@compute @workgroup_size(64, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.num_rows) {
        return;
    }
    let token = row / p.heads_q;
    let head = row % p.heads_q;
    let kv_head = head / (p.heads_q / p.heads_kv);
    let d = p.head_dim;

    if (lid == 0u) {
        // Last sequence s with cu_q[s] <= token (empty sequences share the
        // offset of the next one, so the last such s is the owner).
        var lo = 0u;
        var hi = p.batch;
        while (lo < hi) {
            let mid = (lo + hi + 1u) / 2u;
            if (u32(cu_q[p.cuq_off + mid]) <= token) {
                lo = mid;
            } else {
                hi = mid - 1u;
            }
        }
        let q_start = u32(cu_q[p.cuq_off + lo]);
        let k_start = u32(cu_k[p.cuk_off + lo]);
        seq_sh[0] = q_start;
        seq_sh[1] = u32(cu_q[p.cuq_off + lo + 1u]) - q_start;
        seq_sh[2] = k_start;
        seq_sh[3] = u32(cu_k[p.cuk_off + lo + 1u]) - k_start;
    }
    let q_base = p.q_off + row * d;
    for (var c = lid; c < d; c += WG) {
        q_sh[c] = ld_q(q_base + c);
    }
    // Also the barrier that publishes q_sh.
    let seq = workgroupUniformLoad(&seq_sh);
    let sq = i32(seq[1]);
    let sk = i32(seq[3]);
    let k_start = seq[2];
    let pos = i32(token - seq[0]) + sk - sq;
    // Visible keys [lo, hi), as ops::AttentionParams::visible_keys, without
    // overflow for windows clamped to i32::MAX.
    var lo = 0;
    if (p.window_left >= 0 && pos > p.window_left) {
        lo = pos - p.window_left;
    }
    var hi = sk;
    if (p.window_right >= 0 && p.window_right < sk - pos) {
        hi = max(pos + p.window_right + 1, 0);
    }

    let kv_stride = p.heads_kv * d;
    let kv_col = kv_head * d;
    // Running max (−inf until a finite score arrives), sum, and whether a
    // NaN or +inf score made the row undefined (it is then written NaN).
    var m = bitcast<f32>(NEG_INF_BITS);
    var l = 0.0;
    var bad = false;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var t0 = lo; t0 < hi; t0 += i32(WG)) {
        let n_t = min(i32(WG), hi - t0);
        if (i32(lid) < n_t) {
            let kb = p.k_off + (k_start + u32(t0) + lid) * kv_stride + kv_col;
            var dot = 0.0;
            for (var c = 0u; c < d; c++) {
                dot += q_sh[c] * ld_k(kb + c);
            }
            var s = dot * p.scale;
            if (p.softcap > 0.0) {
                s = p.softcap * tanh_safe(s / p.softcap);
            }
            s_sh[lid] = s;
        }
        workgroupBarrier();
        // Every thread scans the whole tile, so `bad` and `m_new` are
        // uniform. −inf scores weigh 0 (all −inf: a fully masked row).
        var m_new = m;
        for (var t = 0; t < n_t; t++) {
            let st = s_sh[t];
            if (is_nan_or_pos_inf(st)) {
                bad = true;
            } else if (!is_neg_inf(st)) {
                m_new = max(m_new, st);
            }
        }
        if (i32(lid) < n_t) {
            let st = s_sh[lid];
            var e = 0.0;
            if (!is_nan_or_pos_inf(st) && !is_neg_inf(st)) {
                e = exp(st - m_new);
            }
            p_sh[lid] = e;
        }
        workgroupBarrier();
        var corr = 0.0;
        if (!is_neg_inf(m)) {
            corr = exp(m - m_new);
        }
        var p_sum = 0.0;
        for (var t = 0; t < n_t; t++) {
            p_sum += p_sh[t];
        }
        l = l * corr + p_sum;
        for (var c = 0u; c < DIMS_PER_THREAD; c++) {
            let dd = lid + c * WG;
            if (dd < d) {
                var a = acc[c] * corr;
                var vb = p.v_off + (k_start + u32(t0)) * kv_stride + kv_col + dd;
                for (var t = 0; t < n_t; t++) {
                    a += p_sh[t] * ld_v(vb);
                    vb += kv_stride;
                }
                acc[c] = a;
            }
        }
        m = m_new;
        // s_sh / p_sh are rewritten by the next tile.
        workgroupBarrier();
    }

    let out_base = p.out_off + row * d;
    for (var c = 0u; c < DIMS_PER_THREAD; c++) {
        let dd = lid + c * WG;
        if (dd < d) {
            var o = 0.0;
            if (bad) {
                o = bitcast<f32>(NAN_BITS);
            } else if (l > 0.0) {
                o = acc[c] / l;
            }
            st_out(out_base + dd, o);
        }
    }
    if (lid == 0u && p.has_lse != 0u) {
        var bits = NEG_INF_BITS;
        if (bad) {
            bits = NAN_BITS;
        } else if (l > 0.0) {
            bits = bitcast<u32>(m + log(l));
        }
        lse[p.lse_off + head * p.total_q + token] = bits;
    }
}
