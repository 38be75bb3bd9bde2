// Attention with an online softmax, never materialising the score matrix: one
// workgroup per query row walks the visible keys in blocks of 64, keeping the running
// maximum m, the running sum l and the output accumulator (up to 512 dimensions per
// pass; wider heads take several passes over the keys).
//
// Causal masking is bottom-right: query i sees keys j <= i + seq_kv - seq_q.

struct Params {
    rows: u32,
    seq_q: u32,
    seq_kv: u32,
    head_dim: u32,
    q_off: u32,
    k_off: u32,
    v_off: u32,
    o_off: u32,
    scale: f32,
    causal: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> k: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;

const WG: u32 = 64u;
const PER_THREAD: u32 = 8u;
const PASS_DIMS: u32 = 512u; // WG * PER_THREAD

var<workgroup> scores: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= params.rows) {
        return;
    }
    let d = params.head_dim;
    let i = row % params.seq_q;
    let head = row / params.seq_q;
    var visible = params.seq_kv;
    if (params.causal != 0u) {
        visible = min(params.seq_kv, max(i + params.seq_kv + 1u, params.seq_q) - params.seq_q);
    }
    let q_base = params.q_off + row * d;
    let o_base = params.o_off + row * d;
    let kv_base = head * params.seq_kv * d;
    if (visible == 0u) {
        for (var t = lid; t < d; t = t + WG) {
            o[o_base + t] = 0.0;
        }
        return;
    }
    for (var d0 = 0u; d0 < d; d0 = d0 + PASS_DIMS) {
        var acc: array<f32, PER_THREAD>;
        var m = -inf_f32();
        var l = 0.0;
        for (var j0 = 0u; j0 < visible; j0 = j0 + WG) {
            let j = j0 + lid;
            var s = -inf_f32();
            if (j < visible) {
                var dot = 0.0;
                let kr = params.k_off + kv_base + j * d;
                for (var t = 0u; t < d; t = t + 1u) {
                    dot = dot + q[q_base + t] * k[kr + t];
                }
                s = params.scale * dot;
            }
            scores[lid] = s;
            workgroupBarrier();
            let block = min(WG, visible - j0);
            var mb = m;
            for (var jj = 0u; jj < block; jj = jj + 1u) {
                mb = max(mb, scores[jj]);
            }
            // exp(-inf - finite) is 0; written out because WGSL's exp promises nothing there.
            let corr = select(exp(m - mb), 0.0, is_inf(m) && m < 0.0);
            l = l * corr;
            for (var u = 0u; u < PER_THREAD; u = u + 1u) {
                acc[u] = acc[u] * corr;
            }
            for (var jj = 0u; jj < block; jj = jj + 1u) {
                let p = exp(scores[jj] - mb);
                l = l + p;
                let vr = params.v_off + kv_base + (j0 + jj) * d;
                for (var u = 0u; u < PER_THREAD; u = u + 1u) {
                    let t = d0 + lid + u * WG;
                    if (t < d) {
                        acc[u] = acc[u] + p * v[vr + t];
                    }
                }
            }
            m = mb;
            workgroupBarrier();
        }
        for (var u = 0u; u < PER_THREAD; u = u + 1u) {
            let t = d0 + lid + u * WG;
            if (t < d) {
                o[o_base + t] = acc[u] / l;
            }
        }
    }
}
