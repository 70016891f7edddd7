// linear_tile.wgsl — the tiled GEMM core shared by matmul.wgsl and the
// quantized matmuls (a library pulled in with `// @include`, no kernel of
// its own): C = A·B for A [M,K], B [K,N], f32 accumulation, one output tile
// per workgroup of 256 threads. Two tile shapes, chosen by the kernel's
// SKINNY constant (the host picks SKINNY for M ≤ 8, the decode case):
//
// * square (SKINNY = false): 64×64 tiles; thread (tx, ty) = (lid % 16,
//   lid / 16) owns a 4×4 micro-tile (rows ty + 16i, cols tx + 16j, so
//   neighbouring threads touch neighbouring columns). K is walked in slabs
//   of 16: A[64×16] and B[16×64] are staged in workgroup memory as f32,
//   then every thread does 16 rank-1 updates.
// * skinny (SKINNY = true): 4×256 tiles; thread lid owns column lid for the
//   4 rows. K is walked in slabs of 8 (A[4×8] and B[8×256] staged). A
//   decode step (M = 1) wastes 3/4 of the tile instead of 63/64.
//
// The including kernel's loaders widen 16-bit inputs or dequantize weights
// as they are staged. Slab loads are ordered along B's contiguous dimension
// (B_K_FAST). Edges (M, N, K not multiples of the tile) are zero-padded on
// load and masked on store.
//
// The including kernel provides:
//   const SKINNY: bool                    the tile shape (above)
//   const B_K_FAST: bool                  B is contiguous along k
//   fn tile_a(row: u32, k: u32) -> f32    A[row, k], called in bounds
//   fn tile_b(col: u32, k: u32) -> f32    B[k, col], called in bounds
//   fn tile_store(row: u32, col: u32, acc: f32)   called in bounds
// and calls linear_run from uniform control flow (it has barriers).
//
// Limits: 256 invocations, 12 KiB of workgroup memory (WebGPU defaults:
// 256, 16 KiB).

const TILE: u32 = 64u;
const TILE_K: u32 = 16u;
const SKINNY_M: u32 = 4u;
const SKINNY_N: u32 = 256u;
const SKINNY_K: u32 = 8u;
const TILE_THREADS: u32 = 256u;
// square: [TILE_K][TILE]; skinny: [SKINNY_K][SKINNY_M].
var<workgroup> a_tile: array<f32, 1024>;
// square: [TILE_K][TILE] (first 1024); skinny: [SKINNY_K][SKINNY_N].
var<workgroup> b_tile: array<f32, 2048>;

// Computes and stores tile `tile` (row-major over tiles_n tile columns).
fn linear_run(tile: u32, tiles_n: u32, m: u32, n: u32, k: u32, lid: u32) {
    if (SKINNY) {
        skinny_tile(tile, tiles_n, m, n, k, lid);
    } else {
        square_tile(tile, tiles_n, m, n, k, lid);
    }
}

fn square_tile(tile: u32, tiles_n: u32, m: u32, n: u32, k: u32, lid: u32) {
    let row0 = (tile / tiles_n) * TILE;
    let col0 = (tile % tiles_n) * TILE;
    let tx = lid % 16u;
    let ty = lid / 16u;
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
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + ty + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + tx + 16u * j;
            if (row < m && col < n) {
                tile_store(row, col, acc[i][j]);
            }
        }
    }
}

fn skinny_tile(tile: u32, tiles_n: u32, m: u32, n: u32, k: u32, lid: u32) {
    let row0 = (tile / tiles_n) * SKINNY_M;
    let col0 = (tile % tiles_n) * SKINNY_N;
    var acc = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < k; k0 += SKINNY_K) {
        // A slab: 4 rows × 8 k, one value per thread of the first 32.
        if (lid < SKINNY_M * SKINNY_K) {
            let ar = lid / SKINNY_K;
            let ak = lid % SKINNY_K;
            var av = 0.0;
            if (row0 + ar < m && k0 + ak < k) {
                av = tile_a(row0 + ar, k0 + ak);
            }
            a_tile[ak * SKINNY_M + ar] = av;
        }
        // B slab: 8 k × 256 cols, 8 values per thread.
        for (var e = lid; e < SKINNY_N * SKINNY_K; e += TILE_THREADS) {
            var bk: u32;
            var bc: u32;
            if (B_K_FAST) {
                bc = e / SKINNY_K;
                bk = e % SKINNY_K;
            } else {
                bk = e / SKINNY_N;
                bc = e % SKINNY_N;
            }
            var bv = 0.0;
            if (col0 + bc < n && k0 + bk < k) {
                bv = tile_b(col0 + bc, k0 + bk);
            }
            b_tile[bk * SKINNY_N + bc] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < SKINNY_K; kk++) {
            let o = kk * SKINNY_M;
            let av = vec4<f32>(a_tile[o], a_tile[o + 1u], a_tile[o + 2u], a_tile[o + 3u]);
            acc += av * b_tile[kk * SKINNY_N + lid];
        }
        workgroupBarrier();
    }
    let col = col0 + lid;
    for (var i = 0u; i < SKINNY_M; i++) {
        if (row0 + i < m && col < n) {
            tile_store(row0 + i, col, acc[i]);
        }
    }
}
