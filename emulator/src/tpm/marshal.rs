//! TPM 2.0 wire format (Part 2, big-endian): a bounded reader and writer helpers.

use super::TpmError;

/// A cursor over TPM wire bytes; every read is bounds-checked and names the field it reads.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn bytes(&mut self, n: usize, field: &str) -> Result<&'a [u8], TpmError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(TpmError::Malformed(format!(
                "{field}: needs {n} bytes at offset {}, {} left",
                self.pos,
                self.buf.len() - self.pos
            ))),
        }
    }

    pub(crate) fn u16(&mut self, field: &str) -> Result<u16, TpmError> {
        let b = self.bytes(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, field: &str) -> Result<u32, TpmError> {
        let b = self.bytes(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A TPM2B: u16 size, then that many bytes (the buffer only).
    pub(crate) fn tpm2b(&mut self, field: &str) -> Result<&'a [u8], TpmError> {
        let n = self.u16(field)? as usize;
        self.bytes(n, field)
    }

    /// A whole TPM2B including its size prefix.
    pub(crate) fn tpm2b_raw(&mut self, field: &str) -> Result<&'a [u8], TpmError> {
        let start = self.pos;
        self.tpm2b(field)?;
        Ok(&self.buf[start..self.pos])
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails when bytes are left over after the last field.
    pub(crate) fn finish(&self, what: &str) -> Result<(), TpmError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(TpmError::Malformed(format!(
                "{what}: {} trailing bytes",
                self.remaining()
            )))
        }
    }
}

pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a TPM2B (u16 size + bytes). Callers only pass buffers far below 64 KiB (keys,
/// digests, TPM structures); a longer one is a programming error and is truncated to fail loudly
/// in the TPM rather than wrap the size silently.
pub(crate) fn put_tpm2b(out: &mut Vec<u8>, data: &[u8]) {
    let n = data.len().min(u16::MAX as usize);
    put_u16(out, n as u16);
    out.extend_from_slice(&data[..n]);
}

/// `TPM2B(data)` as a new vector.
pub(crate) fn tpm2b(data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 2);
    put_tpm2b(&mut v, data);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reads_fields_and_refuses_short_input() {
        let data = [0x00, 0x02, 0xaa, 0xbb, 0x12, 0x34, 0x56, 0x78, 0x01];
        let mut r = Reader::new(&data);
        assert_eq!(r.tpm2b("x").unwrap(), &[0xaa, 0xbb]);
        assert_eq!(r.u32("y").unwrap(), 0x1234_5678);
        assert!(r.finish("t").is_err());
        let e = r.u16("z").unwrap_err().to_string();
        assert!(e.contains("z: needs 2 bytes at offset 8, 1 left"), "{e}");
        let mut r = Reader::new(&[0x00, 0x05, 1]);
        assert!(r.tpm2b("short").is_err());
    }

    #[test]
    fn tpm2b_prefixes_the_size() {
        assert_eq!(tpm2b(&[7, 8, 9]), vec![0, 3, 7, 8, 9]);
        assert_eq!(tpm2b(&[]), vec![0, 0]);
    }
}
