// awq_matmul.wgsl — y[M,N] = x[M,K] · round_DT(dequant(W))ᵀ (+ bias) for an
// AWQ (AutoAWQ "gemm") weight: qweight i32 [K, N/8] and qzeros i32
// [G, N/8], 4-bit codes interleaved within each word (column j of a word
// sits in nibble REV[j], REV = [0,4,1,5,2,6,3,7]), scales [G, N] in SDT,
// group g = k / (K / G). x, bias, y in DT.
//
// W[n,k] = scales[g, n] · (q[k,n] − z[g,n]) formed in f32 and rounded to
// DT (the contract of ops/awq_matmul.rs), then the product accumulates in
// f32.
//
// Work split: linear_tile.wgsl's tiles (64×64, or 4×256 when SKINNY, for
// decode-sized M), 256 threads; the B loader dequantizes one element per
// load, ordered along N (qweight's contiguous dim).
//
// Limits: 4-bit only; 6 storage buffers; 256 invocations, 12 KiB of
// workgroup memory; u32 indices.
//
// @include linear_tile.wgsl
// @const DT: u32 = 0 | 1 | 2
// @const SDT: u32 = 0 | 1 | 2
// @const HAS_BIAS: bool = false | true
// @const SKINNY: bool = false | true

struct Params {
    m: u32,
    n: u32,
    k: u32,
    groups: u32,
    group_size: u32,
    tiles_n: u32,
    num_tiles: u32,
    x_off: u32,
    qw_off: u32,
    qz_off: u32,
    sc_off: u32,
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
@group(0) @binding(5) var<storage, read> bias: array<u32>;
@group(0) @binding(6) var<storage, read_write> out: array<atomic<u32>>;

const B_K_FAST: bool = false;

// Bit shift of column j (0..8) of an AWQ word: 4 · REV[j] with
// REV = [0,4,1,5,2,6,3,7] = (j >> 1) + 4 · (j & 1).
fn awq_shift(j: u32) -> u32 {
    return 4u * ((j >> 1u) + 4u * (j & 1u));
}

fn tile_a(row: u32, k: u32) -> f32 {
    let i = p.x_off + row * p.k + k;
    return decode(x[widx(i)], i);
}

fn tile_b(col: u32, k: u32) -> f32 {
    let words_per_row = p.n / 8u;
    let shift = awq_shift(col % 8u);
    let q = (qweight[p.qw_off + k * words_per_row + col / 8u] >> shift) & 0xfu;
    let g = min(k / p.group_size, p.groups - 1u);
    let z = (qzeros[p.qz_off + g * words_per_row + col / 8u] >> shift) & 0xfu;
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
