// paged_attention.wgsl — one decode step against a paged KV cache (vLLM
// layout) for f32, f16, bf16 (DT): q [B, Hq, D], k/v cache
// [num_blocks, block_size, Hkv, D], block_tables [B, max_blocks],
// context_lens [B]; GQA/MQA, sliding window, logit softcap.
//
// Work split: one workgroup of 64 threads per (sequence, query head),
// numbered b · Hq + head on a 2-D grid (x ≤ 65535). The query sits at
// position context_len − 1; its visible tokens [lo, hi) are walked in tiles
// of 64 with an online softmax, exactly as attention.wgsl: each thread
// resolves one token of the tile through the block table (the cache row is
// kept in workgroup memory for the P·V pass) and scores it against q staged
// in workgroup memory; the tile max and probabilities go through workgroup
// memory; each thread accumulates P·V for the head dims it owns (lid,
// lid + 64, lid + 128, lid + 192). A sequence with context_len = 0 writes 0.
//
// Limits: head_dim ≤ 256 (`supports()` refuses more), 64 invocations,
// ~1.8 KiB of workgroup memory; u32 indices. Block-table entries are
// validated on the host before launch (ops/paged_attention.rs).
//
// @const DT: u32 = 0 | 1 | 2

struct Params {
    heads_q: u32,
    heads_kv: u32,
    head_dim: u32,
    num_rows: u32,
    block_size: u32,
    max_blocks: u32,
    q_off: u32,
    k_off: u32,
    v_off: u32,
    bt_off: u32,
    len_off: u32,
    out_off: u32,
    window_left: i32,
    window_right: i32,
    scale: f32,
    softcap: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<u32>;
@group(0) @binding(2) var<storage, read> k_cache: array<u32>;
@group(0) @binding(3) var<storage, read> v_cache: array<u32>;
@group(0) @binding(4) var<storage, read> block_tables: array<i32>;
@group(0) @binding(5) var<storage, read> context_lens: array<i32>;
@group(0) @binding(6) var<storage, read_write> out: array<atomic<u32>>;

const WG: u32 = 64u;
const DIMS_PER_THREAD: u32 = 4u;

var<workgroup> q_sh: array<f32, 256>;
var<workgroup> s_sh: array<f32, 64>;
var<workgroup> p_sh: array<f32, 64>;
// Cache row ((block · block_size + slot) · Hkv + kv_head) of each tile token.
var<workgroup> row_sh: array<u32, 64>;
var<workgroup> len_sh: u32;

fn ld_q(i: u32) -> f32 {
    return decode(q[widx(i)], i);
}

fn ld_k(i: u32) -> f32 {
    return decode(k_cache[widx(i)], i);
}

fn ld_v(i: u32) -> f32 {
    return decode(v_cache[widx(i)], i);
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
    let seq = row / p.heads_q;
    let head = row % p.heads_q;
    let kv_head = head / (p.heads_q / p.heads_kv);
    let d = p.head_dim;

    if (lid == 0u) {
        len_sh = u32(context_lens[p.len_off + seq]);
    }
    let q_base = p.q_off + row * d;
    for (var c = lid; c < d; c += WG) {
        q_sh[c] = ld_q(q_base + c);
    }
    // Also the barrier that publishes q_sh.
    let len = i32(workgroupUniformLoad(&len_sh));
    let pos = len - 1;
    var lo = 0;
    if (p.window_left >= 0 && pos > p.window_left) {
        lo = pos - p.window_left;
    }
    var hi = len;
    if (p.window_right >= 0 && p.window_right < len - pos) {
        hi = max(pos + p.window_right + 1, 0);
    }

    let bt_row = p.bt_off + seq * p.max_blocks;
    // Running max (−inf until a finite score arrives), sum, and whether a
    // NaN or +inf score made the row undefined (it is then written NaN).
    var m = bitcast<f32>(NEG_INF_BITS);
    var l = 0.0;
    var bad = false;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var t0 = lo; t0 < hi; t0 += i32(WG)) {
        let n_t = min(i32(WG), hi - t0);
        if (i32(lid) < n_t) {
            let t = u32(t0) + lid;
            let block = u32(block_tables[bt_row + t / p.block_size]);
            let cache_row = (block * p.block_size + t % p.block_size) * p.heads_kv + kv_head;
            row_sh[lid] = cache_row;
            let kb = p.k_off + cache_row * d;
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
                for (var t = 0; t < n_t; t++) {
                    a += p_sh[t] * ld_v(p.v_off + row_sh[t] * d + dd);
                }
                acc[c] = a;
            }
        }
        m = m_new;
        // s_sh / p_sh / row_sh are rewritten by the next tile.
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
}
