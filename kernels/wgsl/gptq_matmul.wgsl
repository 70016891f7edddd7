// gptq_matmul.wgsl — y[M,N] = x[M,K] · round_DT(dequant(W))ᵀ (+ bias) for a
// GPTQ weight: qweight i32 [K/pf, N] (BITS-bit codes packed along K, lowest
// bits first), qzeros i32 [G, N/pf] (z itself, v2 form, packed along N),
// scales [G, N] in SDT, g_idx i32 [K] (act-order honoured). x, bias, y in DT.
//
// W[n,k] = scales[g, n] · (q[k,n] − z[g,n]) with g = g_idx[k] (clamped to
// [0, G) so a weight overwritten on the device cannot read out of bounds),
// formed in f32 (exact for 16-bit scales) and rounded to DT — the contract
// of ops/gptq_matmul.rs — then the product accumulates in f32.
//
// Work split: linear_tile.wgsl's tiles (64×64, or 4×256 when SKINNY, for
// decode-sized M), 256 threads; the B loader dequantizes one element per
// load, ordered along N (qweight's contiguous dim). Words are re-read by the
// pf threads that share them (they hit the cache); a real-GPU version would
// unpack a word per thread.
//
// Limits: BITS 4 or 8; 7 storage buffers; 256 invocations, 12 KiB of
// workgroup memory; u32 indices.
//
// @include linear_tile.wgsl
// @const DT: u32 = 0 | 1 | 2
// @const SDT: u32 = 0 | 1 | 2
// @const BITS: u32 = 4 | 8
// @const HAS_BIAS: bool = false | true
// @const SKINNY: bool = false | true

struct Params {
    m: u32,
    n: u32,
    k: u32,
    groups: u32,
    tiles_n: u32,
    num_tiles: u32,
    x_off: u32,
    qw_off: u32,
    qz_off: u32,
    sc_off: u32,
    gi_off: u32,
    bias_off: u32,
    out_off: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read> qweight: array<u32>;
@group(0) @binding(3) var<storage, read> qzeros: array<u32>;
@group(0) @binding(4) var<storage, read> scales: array<u32>;
@group(0) @binding(5) var<storage, read> g_idx: array<i32>;
@group(0) @binding(6) var<storage, read> bias: array<u32>;
@group(0) @binding(7) var<storage, read_write> out: array<atomic<u32>>;

const B_K_FAST: bool = false;
const PF: u32 = 32u / BITS;
const MASK: u32 = (1u << BITS) - 1u;

fn tile_a(row: u32, k: u32) -> f32 {
    let i = p.x_off + row * p.k + k;
    return decode(x[widx(i)], i);
}

fn tile_b(col: u32, k: u32) -> f32 {
    let q = (qweight[p.qw_off + (k / PF) * p.n + col] >> (BITS * (k % PF))) & MASK;
    let g = u32(clamp(g_idx[p.gi_off + k], 0, i32(p.groups) - 1));
    let z = (qzeros[p.qz_off + g * (p.n / PF) + col / PF] >> (BITS * (col % PF))) & MASK;
    let si = p.sc_off + g * p.n + col;
    let s = decode_dt(SDT, scales[widx_dt(SDT, si)], si);
    return round_dt(s * f32(i32(q) - i32(z)));
}

fn st_out(i: u32, v: f32) {
    if (DT == DT_F32) {
        atomicStore(&out[i], bitcast<u32>(v));
        return;
    }
    let sh = (i & 1u) << 4u;
    atomicAnd(&out[i >> 1u], ~(0xffffu << sh));
    atomicOr(&out[i >> 1u], encode16(v) << sh);
}

fn tile_store(row: u32, col: u32, acc: f32) {
    var v = acc;
    if (HAS_BIAS) {
        v += decode(bias[widx(p.bias_off + col)], p.bias_off + col);
    }
    st_out(p.out_off + row * p.n + col, v);
}

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let tile = wid.x + wid.y * nwg.x;
    if (tile >= p.num_tiles) {
        return;
    }
    linear_run(tile, p.tiles_n, p.m, p.n, p.k, lid);
}
