//! Postcard-compatible primitives shared by every Ferry codec of outside bytes:
//! LEB128 varints (canonical form enforced on read), a bounds-checked [`Reader`], and
//! the CRC-8 of the bundle envelope. Decoders map [`CodecError`] into their own typed
//! errors.

/// A primitive read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes end inside the named field.
    #[error("truncated (ends inside the {0})")]
    Truncated(&'static str),
    /// A malformed, overlong or out-of-range varint in the named field.
    #[error("malformed number in the {0}")]
    BadVarint(&'static str),
    /// A count of items that cannot fit in the bytes left.
    #[error("count in the {0} exceeds the bytes left")]
    TooMany(&'static str),
}

/// Appends `v` as a LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Encoded length of a varint.
pub fn varint_len(v: u64) -> usize {
    let bits = 64 - v.leading_zeros() as usize;
    bits.max(1).div_ceil(7)
}

/// A bounds-checked cursor over outside bytes.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes read so far.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        if self.remaining() < n {
            return Err(CodecError::Truncated(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CodecError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// One byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.take(1, what)?[0])
    }

    /// Canonical postcard varint: at most 10 bytes, no redundant trailing zero group.
    pub fn varint(&mut self, what: &'static str) -> Result<u64, CodecError> {
        let mut v: u64 = 0;
        for i in 0..10u32 {
            let b = self.u8(what)?;
            let low = u64::from(b & 0x7f);
            if i == 9 && (b & 0xfe) != 0 {
                return Err(CodecError::BadVarint(what));
            }
            v |= low << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(CodecError::BadVarint(what));
                }
                return Ok(v);
            }
        }
        Err(CodecError::BadVarint(what))
    }

    /// A varint that must fit in a `u32`.
    pub fn u32_varint(&mut self, what: &'static str) -> Result<u32, CodecError> {
        u32::try_from(self.varint(what)?).map_err(|_| CodecError::BadVarint(what))
    }

    /// A count of items of `item_len` bytes each that must fit in what is left.
    pub fn count(&mut self, item_len: usize, what: &'static str) -> Result<usize, CodecError> {
        let n = self.varint(what)?;
        let n = usize::try_from(n).map_err(|_| CodecError::TooMany(what))?;
        if n.checked_mul(item_len).is_none_or(|b| b > self.remaining()) {
            return Err(CodecError::TooMany(what));
        }
        Ok(n)
    }
}

/// CRC-8/AUTOSAR (poly 0x2F, init 0xFF, xorout 0xFF); detects every single-bit error.
pub fn crc8(data: &[u8]) -> u8 {
    let mut crc: u8 = 0xff;
    for &b in data {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x2f
            } else {
                crc << 1
            };
        }
    }
    crc ^ 0xff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_canonical() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut r = Reader::new(&out);
            assert_eq!(r.varint("x").unwrap(), v);
            assert_eq!(r.remaining(), 0);
        }
        // Overlong encodings of 0 and 1 are refused.
        assert!(Reader::new(&[0x80, 0x00]).varint("x").is_err());
        assert!(Reader::new(&[0x81, 0x00]).varint("x").is_err());
        // Too long for u64.
        assert!(Reader::new(&[0xff; 11]).varint("x").is_err());
        assert!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
                .varint("x")
                .is_err()
        );
        assert!(Reader::new(&[0x80]).varint("x").is_err());
        assert_eq!(
            Reader::new(&[3, 1, 2]).count(1, "x"),
            Err(CodecError::TooMany("x"))
        );
        assert_eq!(Reader::new(&[2, 1, 2]).count(1, "x"), Ok(2));
    }

    #[test]
    fn crc8_detects_single_bit_flips() {
        let data = [3u8, 0x81, 0x01];
        let c = crc8(&data);
        for i in 0..data.len() * 8 {
            let mut d = data;
            d[i / 8] ^= 1 << (i % 8);
            assert_ne!(crc8(&d), c);
        }
        // CRC-8/AUTOSAR check value.
        assert_eq!(crc8(b"123456789"), 0xdf);
    }
}
