// linear_tile.wgsl — the tiled GEMM core shared by matmul.wgsl and the
// quantized matmuls (a library pulled in with `// @include`, no kernel of
// its own). It computes one 64×64 tile of C = A·B, A [M,K], B [K,N], with
// f32 accumulation.
//
// Work split: a workgroup of 16×16 threads; each thread owns a 4×4
// micro-tile (rows ty + 16i, cols tx + 16j, so neighbouring threads touch
// neighbouring columns). K is walked in slabs of 16: the workgroup stages
// A[64×16] and B[16×64] in workgroup memory as f32 (the including kernel's
// loaders widen 16-bit inputs or dequantize weights), then every thread does
// 16 rank-1 updates. Edges (M, N, K not multiples of the tile) are
// zero-padded on load; the caller masks its stores.
//
// The including kernel provides:
//   const B_K_FAST: bool            B is contiguous along k (slab loads are
//                                    ordered along k instead of along n)
//   fn tile_a(row: u32, k: u32) -> f32    A[row, k], called in bounds
//   fn tile_b(col: u32, k: u32) -> f32    B[k, col], called in bounds
// and calls linear_tile from uniform control flow (it has barriers).
//
// Limits: 256 invocations, 8 KiB of workgroup memory (WebGPU defaults).

const TILE: u32 = 64u;
const TILE_K: u32 = 16u;
const TILE_THREADS: u32 = 256u;
// [TILE_K][TILE], f32.
var<workgroup> a_tile: array<f32, 1024>;
var<workgroup> b_tile: array<f32, 1024>;

// The 4×4 accumulators of thread (tx, ty) for the tile at (row0, col0):
// acc[i][j] is C[row0 + ty + 16i, col0 + tx + 16j].
fn linear_tile(m: u32, n: u32, k: u32, row0: u32, col0: u32, tx: u32, ty: u32, lid: u32) -> array<vec4<f32>, 4> {
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < k; k0 += TILE_K) {
        for (var e = lid; e < TILE * TILE_K; e += TILE_THREADS) {
            // A slab: 64 rows × 16 k, consecutive threads along k.
            let ar = e / TILE_K;
            let ak = e % TILE_K;
            var av = 0.0;
            if (row0 + ar < m && k0 + ak < k) {
                av = tile_a(row0 + ar, k0 + ak);
            }
            a_tile[ak * TILE + ar] = av;
            // B slab: 16 k × 64 cols, consecutive threads along B's
            // contiguous dimension.
            var bk: u32;
            var bc: u32;
            if (B_K_FAST) {
                bc = e / TILE_K;
                bk = e % TILE_K;
            } else {
                bk = e / TILE;
                bc = e % TILE;
            }
            var bv = 0.0;
            if (col0 + bc < n && k0 + bk < k) {
                bv = tile_b(col0 + bc, k0 + bk);
            }
            b_tile[bk * TILE + bc] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            let o = kk * TILE;
            let av = vec4<f32>(a_tile[o + ty], a_tile[o + ty + 16u], a_tile[o + ty + 32u], a_tile[o + ty + 48u]);
            let bv = vec4<f32>(b_tile[o + tx], b_tile[o + tx + 16u], b_tile[o + tx + 32u], b_tile[o + tx + 48u]);
            acc[0] += av.x * bv;
            acc[1] += av.y * bv;
            acc[2] += av.z * bv;
            acc[3] += av.w * bv;
        }
        workgroupBarrier();
    }
    return acc;
}
