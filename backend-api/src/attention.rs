//! The arguments of [`ComputeBackend::attention_ex`](crate::ComputeBackend::attention_ex):
//! grouped heads, strided operands (so `[b, s, h, d]` tensors and KV caches are read in
//! place), an additive mask, a causal frontier, a sliding window and a soft cap.

use crate::DType;

/// One attention operand: a device address and the element strides between batches,
/// heads and rows. The last dimension (the head's elements) is contiguous.
///
/// ```
/// use backend_api::HeadTensor;
///
/// // [batch, heads, seq, dim] and [batch, seq, heads, dim] layouts, 8 heads of 64.
/// assert_eq!(HeadTensor::bhsd(0x1000, 8, 100, 64).strides(), [8 * 100 * 64, 100 * 64, 64]);
/// assert_eq!(HeadTensor::bshd(0x1000, 8, 100, 64).strides(), [100 * 8 * 64, 64, 8 * 64]);
/// // A KV cache with room for 4096 rows per head, of which a call uses the first seq_kv.
/// let cache = HeadTensor::bhsd(0x1000, 8, 4096, 64);
/// assert_eq!(cache.head_stride, 4096 * 64);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadTensor {
    /// Device address of element `[0, 0, 0, 0]`.
    pub ptr: u64,
    /// Elements from one batch entry to the next (0 repeats one batch entry).
    pub batch_stride: usize,
    /// Elements from one head to the next (0 repeats one head).
    pub head_stride: usize,
    /// Elements from one row to the next: at least the row's length when there are
    /// several rows.
    pub row_stride: usize,
}

impl HeadTensor {
    /// A tensor with explicit `[batch, head, row]` element strides.
    pub const fn new(ptr: u64, strides: [usize; 3]) -> Self {
        HeadTensor {
            ptr,
            batch_stride: strides[0],
            head_stride: strides[1],
            row_stride: strides[2],
        }
    }

    /// A contiguous `[batch, heads, rows, dim]` tensor (`rows` may be a KV cache's
    /// capacity, larger than the rows a call uses).
    pub const fn bhsd(ptr: u64, heads: usize, rows: usize, dim: usize) -> Self {
        Self::new(ptr, [heads * rows * dim, rows * dim, dim])
    }

    /// A contiguous `[batch, rows, heads, dim]` tensor (the layout of a projection's
    /// output before any transpose).
    pub const fn bshd(ptr: u64, heads: usize, rows: usize, dim: usize) -> Self {
        Self::new(ptr, [rows * heads * dim, dim, heads * dim])
    }

    /// `[batch_stride, head_stride, row_stride]`.
    pub const fn strides(&self) -> [usize; 3] {
        [self.batch_stride, self.head_stride, self.row_stride]
    }
}

/// An additive f32 mask, contiguous `[batch, heads, seq_q, seq_kv]`, added to the scaled
/// (and soft-capped) scores before the softmax. `batch` is 1 (one mask for every batch
/// entry) or the call's batch; `heads` is 1 or the call's query heads. A `-inf` entry
/// excludes that key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionMask {
    /// Device address of the mask.
    pub ptr: u64,
    /// 1 or the call's batch.
    pub batch: usize,
    /// 1 or the call's query heads.
    pub heads: usize,
}

impl AttentionMask {
    /// One `[seq_q, seq_kv]` mask for every batch entry and head.
    pub const fn shared(ptr: u64) -> Self {
        AttentionMask {
            ptr,
            batch: 1,
            heads: 1,
        }
    }
}

/// The arguments of [`attention_ex`](crate::ComputeBackend::attention_ex).
///
/// `O = softmax(mask + cap(scale * Q K^T)) V` per batch entry and query head. Query head
/// `h` reads key/value head `h / (heads / kv_heads)` (grouped-query attention;
/// `kv_heads == 1` is multi-query). Q is `[batch, heads, seq_q, head_dim]`, K
/// `[batch, kv_heads, seq_kv, head_dim]`, V `[batch, kv_heads, seq_kv, v_head_dim]` and O
/// `[batch, heads, seq_q, v_head_dim]`, each through its [`HeadTensor`] strides.
///
/// Query `i` sees key `j` when `j <= i + seq_kv - seq_q` with `causal` (bottom-right, as
/// in [`attention`](crate::ComputeBackend::attention)), when additionally `j > i + seq_kv
/// - seq_q - window` with a `window` (which needs `causal`), and when the mask entry is
/// not `-inf`. A row that sees no key outputs zeros.
///
/// ```
/// use backend_api::{AttentionArgs, AttentionMask, HeadTensor};
///
/// // Decode step of a GQA layer: 32 query heads over 8 KV heads, one new token, 1000
/// // cached rows of a cache with room for 4096.
/// let (q, k, v, o) = (0x1000, 0x10_0000, 0x90_0000, 0x2000);
/// let args = AttentionArgs::new(
///     1, 32, 8, 1, 1000, 128,
///     HeadTensor::bhsd(q, 32, 1, 128),
///     HeadTensor::bhsd(k, 8, 4096, 128),
///     HeadTensor::bhsd(v, 8, 4096, 128),
///     HeadTensor::bhsd(o, 32, 1, 128),
/// )
/// .causal(true);
/// assert_eq!(args.scale, 1.0 / 128f64.sqrt());
/// assert_eq!(args.mask, None);
/// let masked = args.mask(AttentionMask::shared(0x3000));
/// assert_eq!(masked.mask.unwrap().batch, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionArgs {
    /// Batch size.
    pub batch: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads; divides `heads`.
    pub kv_heads: usize,
    /// Query rows.
    pub seq_q: usize,
    /// Key/value rows used (a cache may hold more: its strides say where they are).
    pub seq_kv: usize,
    /// Elements of a Q or K row.
    pub head_dim: usize,
    /// Elements of a V or O row.
    pub v_head_dim: usize,
    /// Queries.
    pub q: HeadTensor,
    /// Keys.
    pub k: HeadTensor,
    /// Values.
    pub v: HeadTensor,
    /// Output; must not overlap Q, K, V or the mask, and its rows must not overlap
    /// each other.
    pub o: HeadTensor,
    /// Multiplies `Q K^T` (default `1 / sqrt(head_dim)`).
    pub scale: f64,
    /// Bottom-right causal frontier.
    pub causal: bool,
    /// Additive mask.
    pub mask: Option<AttentionMask>,
    /// `scores = softcap * tanh(scores / softcap)` before the mask (Gemma 2); finite and
    /// positive.
    pub softcap: Option<f64>,
    /// Sliding window (Mistral): query `i` sees at most the `window` keys ending at its
    /// causal frontier. At least 1; needs `causal`.
    pub window: Option<usize>,
    /// Storage of Q, K, V and O: f32, or f16/bf16 (each element widened exactly, the
    /// arithmetic in f32 or better, O rounded once at the store); the mask stays f32.
    pub dtype: DType,
}

impl AttentionArgs {
    /// Arguments with `v_head_dim = head_dim`, `scale = 1 / sqrt(head_dim)`, no causal
    /// frontier, mask, soft cap or window.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        batch: usize,
        heads: usize,
        kv_heads: usize,
        seq_q: usize,
        seq_kv: usize,
        head_dim: usize,
        q: HeadTensor,
        k: HeadTensor,
        v: HeadTensor,
        o: HeadTensor,
    ) -> Self {
        AttentionArgs {
            batch,
            heads,
            kv_heads,
            seq_q,
            seq_kv,
            head_dim,
            v_head_dim: head_dim,
            q,
            k,
            v,
            o,
            scale: 1.0 / (head_dim.max(1) as f64).sqrt(),
            causal: false,
            mask: None,
            softcap: None,
            window: None,
            dtype: DType::F32,
        }
    }

    /// With Q, K, V and O stored as `dtype`.
    pub fn dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }

    /// With `causal` set.
    pub fn causal(mut self, causal: bool) -> Self {
        self.causal = causal;
        self
    }

    /// With this scale.
    pub fn scale(mut self, scale: f64) -> Self {
        self.scale = scale;
        self
    }

    /// With this mask.
    pub fn mask(mut self, mask: AttentionMask) -> Self {
        self.mask = Some(mask);
        self
    }

    /// With this soft cap.
    pub fn softcap(mut self, cap: f64) -> Self {
        self.softcap = Some(cap);
        self
    }

    /// With this sliding window (and `causal`, which a window needs).
    pub fn window(mut self, window: usize) -> Self {
        self.window = Some(window);
        self.causal = true;
        self
    }

    /// With V and O rows of `v_head_dim` elements.
    pub fn v_head_dim(mut self, v_head_dim: usize) -> Self {
        self.v_head_dim = v_head_dim;
        self
    }
}
