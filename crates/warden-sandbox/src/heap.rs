//! Returning freed heap memory to the kernel, after one-off work at start-up (building the
//! detection rules) that allocates and frees several megabytes of scratch space.
#![expect(
    unsafe_code,
    reason = "malloc_trim is a foreign function; the block has its SAFETY note"
)]

/// Asks the C allocator to give the free memory at the top of the heap and of every thread
/// arena back to the kernel. glibc keeps freed memory in its arenas for reuse; a thread that
/// built large temporary structures (automata under construction) leaves megabytes resident
/// that nothing will use again. Returns whether memory was released. A no-op returning
/// `false` where the allocator has no such call (musl, other platforms).
pub fn release_free_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes a plain integer (bytes to keep at the top of the heap) and
        // only walks the allocator's own free lists under its locks; it is safe to call from
        // any thread at any time.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    fn rss_anon_kb() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn memory_freed_by_a_thread_goes_back_to_the_kernel() {
        // A thread allocates 32 MiB in 8 KiB blocks, each followed by a small block that
        // stays, then frees the large ones: the free space is scattered between live blocks, as
        // after an automaton build, so the allocator cannot just shrink its heap.
        let (before, after) = std::thread::spawn(|| {
            let mut large = Vec::with_capacity(4096);
            let mut kept = Vec::with_capacity(4096);
            for i in 0..4096_usize {
                large.push(vec![(i % 251) as u8 + 1; 8192]);
                kept.push(Box::new(i));
            }
            let touched: u64 = large.iter().map(|b| u64::from(b[4096])).sum();
            assert!(touched > 0);
            drop(large);
            let before = rss_anon_kb();
            super::release_free_heap();
            let after = rss_anon_kb();
            assert_eq!(kept.iter().map(|k| **k).sum::<usize>(), 4095 * 4096 / 2);
            (before, after)
        })
        .join()
        .unwrap();
        // 32 MiB were allocated; at least half of it must have been released.
        assert!(
            after + 16 * 1024 <= before,
            "RssAnon {before} kB before the trim, {after} kB after"
        );
    }
}
