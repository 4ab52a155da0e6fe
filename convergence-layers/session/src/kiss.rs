//! KISS framing (the TNC protocol of amateur packet radio, spoken by RNode radios and
//! KISS TNCs) on a byte stream.
//!
//! ```text
//! frame = FEND command:u8 escaped(data) FEND
//! FEND = 0xC0; inside a frame 0xC0 is sent as FESC TFEND (0xDB 0xDC) and 0xDB as
//! FESC TFESC (0xDB 0xDD)
//! ```
//!
//! The low nibble of `command` is the command (0 = data), the high nibble the TNC
//! port. [`Decoder`] reassembles frames from any split of the stream, keeps at most
//! its `max_frame` bytes of one frame, and reports what it throws away (an overlong
//! frame, a bad escape) as a [`KissError`] instead of panicking; after an error it
//! resynchronises at the next `FEND`. Empty frames (two `FEND`s in a row, which
//! senders use as fill) are skipped silently.
//!
//! ```
//! use ferry_cl_session::kiss::{self, Decoder};
//! let wire = kiss::encode(0x00, &[1, 0xC0, 2, 0xDB]);
//! assert_eq!(wire, [0xC0, 0x00, 1, 0xDB, 0xDC, 2, 0xDB, 0xDD, 0xC0]);
//! let mut d = Decoder::new(255);
//! let frames: Vec<_> = d.feed(&wire).collect();
//! assert_eq!(frames, vec![Ok(kiss::Frame { command: 0, data: vec![1, 0xC0, 2, 0xDB] })]);
//! ```

/// Frame end.
pub const FEND: u8 = 0xC0;
/// Frame escape.
pub const FESC: u8 = 0xDB;
/// Transposed frame end.
pub const TFEND: u8 = 0xDC;
/// Transposed frame escape.
pub const TFESC: u8 = 0xDD;
/// The data command (port 0).
pub const CMD_DATA: u8 = 0x00;

/// One decoded KISS frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The command byte (port in the high nibble).
    pub command: u8,
    /// The unescaped data.
    pub data: Vec<u8>,
}

/// What the decoder dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KissError {
    /// The frame grew beyond the decoder's limit; it was discarded.
    #[error("KISS frame longer than {max} bytes")]
    Oversized {
        /// The limit.
        max: usize,
    },
    /// `FESC` followed by something other than `TFEND`/`TFESC`.
    #[error("bad KISS escape 0x{0:02x}")]
    BadEscape(u8),
}

/// Appends the KISS encoding of one frame to `out`.
pub fn encode_into(command: u8, data: &[u8], out: &mut Vec<u8>) {
    out.reserve(data.len() + 4);
    out.push(FEND);
    push_escaped(command, out);
    for &b in data {
        push_escaped(b, out);
    }
    out.push(FEND);
}

/// The KISS encoding of one frame.
pub fn encode(command: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 4);
    encode_into(command, data, &mut out);
    out
}

fn push_escaped(b: u8, out: &mut Vec<u8>) {
    match b {
        FEND => out.extend_from_slice(&[FESC, TFEND]),
        FESC => out.extend_from_slice(&[FESC, TFESC]),
        b => out.push(b),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Outside a frame: bytes before the next `FEND` are noise.
    Hunt,
    /// Inside a frame.
    In,
    /// Inside a frame, after `FESC`.
    Escape,
    /// Dropping the rest of a bad frame until `FEND`.
    Discard,
}

/// Counters of what a [`Decoder`] saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KissStats {
    /// Frames decoded.
    pub frames: u64,
    /// Frames dropped for their length.
    pub oversized: u64,
    /// Frames dropped for a bad escape.
    pub bad_escapes: u64,
    /// Bytes outside any frame (line noise before a `FEND`).
    pub noise_bytes: u64,
}

/// A streaming KISS decoder with bounded memory.
#[derive(Debug)]
pub struct Decoder {
    max_frame: usize,
    buf: Vec<u8>,
    state: State,
    stats: KissStats,
}

impl Decoder {
    /// A decoder keeping at most `max_frame` bytes (command byte included) of a frame.
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame: max_frame.max(1),
            buf: Vec::new(),
            state: State::Hunt,
            stats: KissStats::default(),
        }
    }

    /// What the decoder has seen so far.
    pub fn stats(&self) -> KissStats {
        self.stats
    }

    /// Feeds bytes; yields each frame (or error) completed by them, in order.
    pub fn feed<'a>(&'a mut self, bytes: &'a [u8]) -> Feed<'a> {
        Feed {
            decoder: self,
            bytes,
            pos: 0,
        }
    }

    /// Feeds one byte; returns a completed frame or an error.
    pub fn push(&mut self, b: u8) -> Option<Result<Frame, KissError>> {
        match (self.state, b) {
            (State::Hunt, FEND) => {
                self.state = State::In;
                self.buf.clear();
                None
            }
            (State::Hunt, _) => {
                self.stats.noise_bytes += 1;
                None
            }
            (State::Discard, FEND) => {
                self.state = State::In;
                self.buf.clear();
                None
            }
            (State::Discard, _) => None,
            (State::In, FEND) => {
                if self.buf.is_empty() {
                    return None;
                }
                self.stats.frames += 1;
                let command = self.buf[0];
                let data = self.buf[1..].to_vec();
                self.buf.clear();
                Some(Ok(Frame { command, data }))
            }
            (State::In, FESC) => {
                self.state = State::Escape;
                None
            }
            (State::In, b) => self.store(b),
            (State::Escape, TFEND) => {
                self.state = State::In;
                self.store(FEND)
            }
            (State::Escape, TFESC) => {
                self.state = State::In;
                self.store(FESC)
            }
            (State::Escape, other) => {
                self.stats.bad_escapes += 1;
                self.buf.clear();
                // A FEND right after FESC also ends the bad frame and opens the next.
                self.state = if other == FEND {
                    State::In
                } else {
                    State::Discard
                };
                Some(Err(KissError::BadEscape(other)))
            }
        }
    }

    fn store(&mut self, b: u8) -> Option<Result<Frame, KissError>> {
        if self.buf.len() >= self.max_frame {
            self.stats.oversized += 1;
            self.buf.clear();
            self.state = State::Discard;
            return Some(Err(KissError::Oversized {
                max: self.max_frame,
            }));
        }
        self.buf.push(b);
        None
    }
}

/// The frames completed by one [`Decoder::feed`].
#[derive(Debug)]
pub struct Feed<'a> {
    decoder: &'a mut Decoder,
    bytes: &'a [u8],
    pos: usize,
}

impl Iterator for Feed<'_> {
    type Item = Result<Frame, KissError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.pos < self.bytes.len() {
            let b = self.bytes[self.pos];
            self.pos += 1;
            if let Some(r) = self.decoder.push(b) {
                return Some(r);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn noise_oversize_and_bad_escapes_are_counted_and_the_stream_recovers() {
        let mut d = Decoder::new(4);
        let mut wire = vec![1, 2, 3]; // noise before the first FEND
        wire.extend(encode(0, &[9; 10])); // too long
        wire.extend([FEND, 0, FESC, 0x01, 7, FEND]); // bad escape
        wire.extend(encode(0, &[5, 6]));
        let out: Vec<_> = d.feed(&wire).collect();
        assert_eq!(
            out,
            vec![
                Err(KissError::Oversized { max: 4 }),
                Err(KissError::BadEscape(1)),
                Ok(Frame {
                    command: 0,
                    data: vec![5, 6]
                })
            ]
        );
        let s = d.stats();
        assert_eq!(
            (s.frames, s.oversized, s.bad_escapes, s.noise_bytes),
            (1, 1, 1, 3)
        );
    }

    proptest! {
        #[test]
        fn any_split_of_a_stream_decodes_the_same(
            frames in proptest::collection::vec((0u8..16, proptest::collection::vec(any::<u8>(), 1..64)), 1..8),
            cut in 0usize..512,
        ) {
            let mut wire = Vec::new();
            for (c, d) in &frames { encode_into(*c, d, &mut wire); }
            let cut = cut.min(wire.len());
            let mut d = Decoder::new(256);
            let mut got: Vec<_> = d.feed(&wire[..cut]).collect();
            got.extend(d.feed(&wire[cut..]).collect::<Vec<_>>());
            let want: Vec<_> = frames.iter().map(|(c, d)| Ok(Frame { command: *c, data: d.clone() })).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_frames_stay_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut d = Decoder::new(32);
            for f in d.feed(&bytes).flatten() {
                prop_assert!(f.data.len() < 32);
            }
        }
    }
}
