//! The heap the library itself allocates to open a TPM (a counting global allocator; the C
//! libraries' malloc is not counted): within the 32 KiB budget on the device TCTI, which every
//! real TPM uses. (tss-esapi's TCTI string parser compiles regular expressions, ~330 KiB for a
//! moment; the library avoids it for `device:` and bare `tabrmd`; the network TCTIs of the
//! simulators still pay it: bench/RESULTS.md.) Own test binary: it installs the allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use dps::tpm::{Tpm, TpmOptions};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Peak bytes allocated above the level at the start while `f` runs.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let r = f();
    (r, PEAK.load(Ordering::SeqCst) - base)
}

#[test]
fn opening_a_device_tpm_stays_within_the_heap_budget() {
    // No TPM at this path: the open fails in tpm2-tss after the TCTI is parsed and the worker
    // thread started, which is the library's whole share of opening a device TPM.
    for tcti in ["device:/nonexistent/tpmrm0", "device"] {
        let options = TpmOptions {
            tcti: tcti.to_owned(),
            ..TpmOptions::default()
        };
        let (r, peak) = peak_during(|| Tpm::open(&options));
        let e = r.expect_err("no TPM there");
        println!("Tpm::open({tcti}): {e}; peak Rust heap {peak} bytes");
        assert_eq!(e.kind, dps::ErrorKind::Tpm, "{e}");
        assert!(
            peak <= 32 * 1024,
            "opening {tcti} peaked at {peak} bytes of Rust heap (budget 32 KiB)"
        );
    }
}
