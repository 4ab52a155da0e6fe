//! Small file helpers: the write budget, directory fsync, temp names.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use ferry_core::rand_core::{OsRng, RngCore};

use crate::format::hex;

/// Bytes that may still be written through a drive handle (`None`: no budget).
#[derive(Debug, Default)]
pub(crate) struct Budget {
    limited: bool,
    left: AtomicU64,
}

impl Budget {
    pub(crate) fn set(&mut self, bytes: Option<u64>) {
        self.limited = bytes.is_some();
        *self.left.get_mut() = bytes.unwrap_or(0);
    }

    /// Takes up to `n` bytes from the budget; returns how many were granted.
    fn take(&self, n: usize) -> usize {
        if !self.limited {
            return n;
        }
        let want = n as u64;
        let mut granted = 0;
        let _ = self
            .left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                granted = left.min(want);
                Some(left - granted)
            });
        // granted ≤ n, so this fits.
        usize::try_from(granted).unwrap_or(n)
    }

    fn refund(&self, n: usize) {
        self.refund_bytes(n as u64);
    }

    /// Gives bytes back (a file written through the budget was removed): the budget
    /// behaves like the free space of a real drive.
    pub(crate) fn refund_bytes(&self, n: u64) {
        if self.limited {
            self.left.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// The error a full disk gives.
pub(crate) fn enospc() -> io::Error {
    #[cfg(unix)]
    {
        io::Error::from_raw_os_error(libc::ENOSPC)
    }
    #[cfg(not(unix))]
    {
        io::Error::new(io::ErrorKind::StorageFull, "no space left on device")
    }
}

/// A file whose writes are charged to a [`Budget`]; past it they fail like ENOSPC
/// (after writing the part that fits, as a real disk does).
#[derive(Debug)]
pub(crate) struct BudgetFile<'d> {
    pub(crate) file: File,
    budget: &'d Budget,
}

impl<'d> BudgetFile<'d> {
    pub(crate) fn new(file: File, budget: &'d Budget) -> Self {
        Self { file, budget }
    }
}

impl Write for BudgetFile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let granted = self.budget.take(buf.len());
        if granted == 0 {
            return Err(enospc());
        }
        match self.file.write(&buf[..granted]) {
            Ok(n) => {
                self.budget.refund(granted - n);
                Ok(n)
            }
            Err(e) => {
                self.budget.refund(granted);
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// fsyncs a directory so a rename or unlink in it is durable. File systems that
/// cannot fsync a directory (EINVAL) are accepted as they are.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        Err(e) => Err(e),
    }
}

/// 16 random bytes from the OS.
pub(crate) fn random_16() -> io::Result<[u8; 16]> {
    let mut b = [0u8; 16];
    OsRng
        .try_fill_bytes(&mut b)
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(b)
}

/// A fresh temp file name: `<32 hex>.<suffix>.tmp`.
pub(crate) fn temp_name(suffix: &str) -> io::Result<String> {
    Ok(format!("{}.{suffix}.tmp", hex(&random_16()?)))
}
