//! Splitting work over `std::thread::scope` when there is enough of it.

use std::num::NonZeroUsize;
use std::sync::OnceLock;

/// Below this many multiply-adds a job runs on the calling thread: spawning costs ~20 us.
const MIN_WORK_PER_THREAD: usize = 1 << 16;

fn threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get))
}

/// Calls `f(first_chunk_index, chunks)` on disjoint runs of `chunk`-sized pieces of `out`
/// (the last piece may be shorter), in parallel when `work` (total multiply-adds) is large.
pub(crate) fn for_chunks<T: Send>(
    out: &mut [T],
    chunk: usize,
    work: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let chunk = chunk.max(1);
    let pieces = out.len().div_ceil(chunk);
    let n_threads = threads().min(pieces).min(work / MIN_WORK_PER_THREAD).max(1);
    if n_threads == 1 {
        f(0, out);
        return;
    }
    let per_thread = pieces.div_ceil(n_threads);
    std::thread::scope(|s| {
        for (t, part) in out.chunks_mut(per_thread * chunk).enumerate() {
            let f = &f;
            s.spawn(move || f(t * per_thread, part));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_piece_is_visited_once_with_its_index() {
        for (len, chunk, work) in [
            (10, 3, 0),
            (1000, 7, usize::MAX),
            (5, 10, usize::MAX),
            (0, 4, 1 << 30),
        ] {
            let mut v = vec![0usize; len];
            for_chunks(&mut v, chunk, work, |first, part| {
                for (j, piece) in part.chunks_mut(chunk).enumerate() {
                    for x in piece {
                        *x += first + j + 1;
                    }
                }
            });
            for (i, x) in v.iter().enumerate() {
                assert_eq!(*x, i / chunk + 1, "len {len} chunk {chunk} index {i}");
            }
        }
    }
}
