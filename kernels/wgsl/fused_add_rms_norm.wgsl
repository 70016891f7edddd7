// fused_add_rms_norm.wgsl — residual ← round_DT(x + residual);
// y = rms_norm(residual) · (weight + weight_offset), for f32, f16, bf16 (DT).
//
// Work split: as rms_norm.wgsl, one workgroup of 256 threads per row. Pass 1:
// each thread forms the sum for its columns (lid, lid + 256, ...), rounds it
// to DT (the contract: the rounded sum is what is stored and normalized),
// writes it to `residual` and accumulates its square in f32. A tree
// reduction gives the row's mean square. Pass 2: each thread re-reads the
// rounded sums it wrote itself and writes y. `residual` is read and written
// through atomics because 16-bit neighbours share a word with other threads.
//
// Limits: 256 invocations, 1 KiB of workgroup memory; u32 indices.
//
// @const DT: u32 = 0 | 1 | 2

struct Params {
    rows: u32,
    hidden: u32,
    x_off: u32,
    res_off: u32,
    w_off: u32,
    out_off: u32,
    eps: f32,
    weight_offset: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> residual: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read> w: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<atomic<u32>>;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, 256>;

fn ld_x(i: u32) -> f32 {
    return decode(x[widx(i)], i);
}

fn ld_w(i: u32) -> f32 {
    return decode(w[widx(i)], i);
}

fn ld_res(i: u32) -> f32 {
    return decode(atomicLoad(&residual[widx(i)]), i);
}

fn st_res(i: u32, v: f32) {
    if (DT == DT_F32) {
        atomicStore(&residual[i], bitcast<u32>(v));
        return;
    }
    let sh = (i & 1u) << 4u;
    atomicAnd(&residual[i >> 1u], ~(0xffffu << sh));
    atomicOr(&residual[i >> 1u], encode16(v) << sh);
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

@compute @workgroup_size(256, 1, 1)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.hidden;
    var sum = 0.0;
    for (var c = lid; c < p.hidden; c += WG) {
        let s = round_dt(ld_x(p.x_off + base + c) + ld_res(p.res_off + base + c));
        st_res(p.res_off + base + c, s);
        sum += s * s;
    }
    partial[lid] = sum;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    let inv_rms = 1.0 / sqrt(partial[0] / f32(p.hidden) + p.eps);
    for (var c = lid; c < p.hidden; c += WG) {
        let s = ld_res(p.res_off + base + c);
        st_out(p.out_off + base + c, s * inv_rms * (ld_w(p.w_off + c) + p.weight_offset));
    }
}
