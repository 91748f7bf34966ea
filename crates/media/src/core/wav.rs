//! The WAV (RIFF, PCM 16-bit little-endian) container of our recordings:
//! stereo 8 kHz, channel 0 the customer/caller side, channel 1 the agent.
//!
//! The 44-byte canonical header is written by hand (no `hound`): it is one
//! fixed layout, and writing it ourselves lets [`WavWriter`] rewrite the
//! sizes in place at the end, or periodically, so a recording cut short by
//! a crash is still playable up to its last header update.
//! [`parse_header`] reads a header back (tests, and the recording endpoint
//! that needs the data offset for HTTP Range).
//!
//! The writer works on any `Write + Seek`; it belongs to the shell, which
//! owns the file and runs it off the media path.

use std::io::{Seek, SeekFrom, Write};

pub const HEADER_LEN: usize = 44;
const BITS_PER_SAMPLE: u16 = 16;
/// The RIFF size field is 32-bit: the data chunk can hold at most this.
const MAX_DATA_LEN: u64 = u32::MAX as u64 - (HEADER_LEN as u64 - 8);

#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("WAV I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("WAV data would exceed 4 GiB")]
    TooLarge,
    #[error("{0} bytes is not a whole number of sample frames")]
    PartialFrame(usize),
    #[error("a WAV needs at least one channel and a sample rate")]
    BadFormat,
    #[error("not a PCM WAV header: {0}")]
    BadHeader(&'static str),
}

/// Channel count and sample rate of a 16-bit PCM WAV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavFormat {
    pub channels: u16,
    pub sample_rate: u32,
}

impl WavFormat {
    /// Our recordings: stereo (customer, agent), 8 kHz.
    pub const CALL_STEREO: WavFormat = WavFormat {
        channels: 2,
        sample_rate: 8000,
    };

    /// Bytes per sample frame (all channels).
    pub fn block_align(self) -> u16 {
        self.channels * (BITS_PER_SAMPLE / 8)
    }

    pub fn byte_rate(self) -> u32 {
        self.sample_rate * self.block_align() as u32
    }
}

/// The 44-byte header for `data_len` bytes of samples.
pub fn header(format: WavFormat, data_len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&data_len.saturating_add(36).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&format.channels.to_le_bytes());
    h[24..28].copy_from_slice(&format.sample_rate.to_le_bytes());
    h[28..32].copy_from_slice(&format.byte_rate().to_le_bytes());
    h[32..34].copy_from_slice(&format.block_align().to_le_bytes());
    h[34..36].copy_from_slice(&BITS_PER_SAMPLE.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

/// A parsed header: the format, where the samples start and how many
/// bytes the data chunk declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavInfo {
    pub format: WavFormat,
    pub data_offset: usize,
    pub data_len: u32,
}

/// Reads a 16-bit PCM WAV header (chunks other than `fmt ` before `data`
/// are skipped).
pub fn parse_header(bytes: &[u8]) -> Result<WavInfo, WavError> {
    let get =
        |range: std::ops::Range<usize>| bytes.get(range).ok_or(WavError::BadHeader("truncated"));
    let u16_at = |at: usize| -> Result<u16, WavError> {
        let b = get(at..at + 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| -> Result<u32, WavError> {
        let b = get(at..at + 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if get(0..4)? != b"RIFF" || get(8..12)? != b"WAVE" {
        return Err(WavError::BadHeader("not RIFF/WAVE"));
    }
    let mut at = 12usize;
    let mut format = None;
    // A bounded walk: real files have two to four chunks.
    for _ in 0..64 {
        let id = get(at..at + 4)?;
        let len = u32_at(at + 4)? as usize;
        let body = at + 8;
        if id == b"fmt " {
            if len < 16 {
                return Err(WavError::BadHeader("short fmt chunk"));
            }
            if u16_at(body)? != 1 {
                return Err(WavError::BadHeader("not PCM"));
            }
            if u16_at(body + 14)? != BITS_PER_SAMPLE {
                return Err(WavError::BadHeader("not 16-bit"));
            }
            let channels = u16_at(body + 2)?;
            if channels == 0 {
                return Err(WavError::BadHeader("no channels"));
            }
            format = Some(WavFormat {
                channels,
                sample_rate: u32_at(body + 4)?,
            });
        } else if id == b"data" {
            let format = format.ok_or(WavError::BadHeader("data before fmt"))?;
            return Ok(WavInfo {
                format,
                data_offset: body,
                data_len: len as u32,
            });
        }
        // Chunks are padded to an even length.
        at = body
            .checked_add(len + (len & 1))
            .ok_or(WavError::BadHeader("chunk length overflows"))?;
    }
    Err(WavError::BadHeader("no data chunk"))
}

/// Writes a 16-bit PCM WAV to a seekable sink; the sizes are fixed by
/// [`update_header`](Self::update_header) and [`finalize`](Self::finalize).
#[derive(Debug)]
pub struct WavWriter<W: Write + Seek> {
    inner: W,
    format: WavFormat,
    /// Where the header starts in `inner`.
    start: u64,
    data_len: u64,
}

impl<W: Write + Seek> WavWriter<W> {
    /// Writes a header with size 0 at the sink's current position.
    pub fn new(mut inner: W, format: WavFormat) -> Result<Self, WavError> {
        if format.channels == 0 || format.sample_rate == 0 {
            return Err(WavError::BadFormat);
        }
        let start = inner.stream_position()?;
        inner.write_all(&header(format, 0))?;
        Ok(WavWriter {
            inner,
            format,
            start,
            data_len: 0,
        })
    }

    pub fn format(&self) -> WavFormat {
        self.format
    }

    /// Bytes of sample data written so far.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// Interleaved samples (one per channel per frame).
    pub fn write_samples(&mut self, samples: &[i16]) -> Result<(), WavError> {
        let mut bytes = Vec::with_capacity(samples.len() * 2);
        for s in samples {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        self.write_bytes(&bytes)
    }

    /// Sample data already in little-endian interleaved form (what
    /// [`crate::core::recorder::Recorder::poll_bytes`] produces).
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), WavError> {
        if !bytes
            .len()
            .is_multiple_of(self.format.block_align() as usize)
        {
            return Err(WavError::PartialFrame(bytes.len()));
        }
        if self.data_len + bytes.len() as u64 > MAX_DATA_LEN {
            return Err(WavError::TooLarge);
        }
        self.inner.write_all(bytes)?;
        self.data_len += bytes.len() as u64;
        Ok(())
    }

    /// Rewrites the header with the current sizes and returns to the end.
    pub fn update_header(&mut self) -> Result<(), WavError> {
        let h = header(self.format, self.data_len as u32);
        self.inner.seek(SeekFrom::Start(self.start))?;
        self.inner.write_all(&h)?;
        self.inner.seek(SeekFrom::Start(
            self.start + HEADER_LEN as u64 + self.data_len,
        ))?;
        Ok(())
    }

    /// Fixes the header, flushes, and gives the sink back.
    pub fn finalize(mut self) -> Result<W, WavError> {
        self.update_header()?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testutil::Rng;
    use std::io::Cursor;

    #[test]
    fn header_layout() {
        let h = header(WavFormat::CALL_STEREO, 32_000);
        assert_eq!(&h[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes([h[4], h[5], h[6], h[7]]), 32_036);
        // Stereo 8 kHz 16-bit: byte rate 32000, block align 4.
        assert_eq!(u32::from_le_bytes([h[28], h[29], h[30], h[31]]), 32_000);
        assert_eq!(u16::from_le_bytes([h[32], h[33]]), 4);
        let info = parse_header(&h).expect("parse");
        assert_eq!(
            info,
            WavInfo {
                format: WavFormat::CALL_STEREO,
                data_offset: 44,
                data_len: 32_000
            }
        );
    }

    #[test]
    fn writer_finalizes_sizes() {
        let mut w = WavWriter::new(Cursor::new(Vec::new()), WavFormat::CALL_STEREO).expect("new");
        w.write_samples(&[1, -1, 2, -2]).expect("write");
        w.update_header().expect("update");
        w.write_bytes(&[3, 0, 253, 255]).expect("write");
        assert!(matches!(
            w.write_bytes(&[1, 2]),
            Err(WavError::PartialFrame(2))
        ));
        let bytes = w.finalize().expect("finalize").into_inner();
        assert_eq!(bytes.len(), 44 + 12);
        let info = parse_header(&bytes).expect("parse");
        assert_eq!(info.data_len, 12);
        let samples: Vec<i16> = bytes[44..]
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(samples, vec![1, -1, 2, -2, 3, -3]);
    }

    #[test]
    fn writer_at_an_offset() {
        // A sink that already holds something: the header goes where the
        // writer started.
        let mut cursor = Cursor::new(vec![0xaa; 10]);
        cursor.set_position(10);
        let mut w = WavWriter::new(cursor, WavFormat::CALL_STEREO).expect("new");
        w.write_samples(&[5, 6]).expect("write");
        let bytes = w.finalize().expect("finalize").into_inner();
        assert_eq!(&bytes[..10], &[0xaa; 10]);
        assert_eq!(parse_header(&bytes[10..]).expect("parse").data_len, 4);
    }

    #[test]
    fn skips_extra_chunks() {
        // RIFF WAVE with a LIST chunk (odd length, padded) before fmt.
        let mut bytes = b"RIFF\0\0\0\0WAVELIST\x03\0\0\0abc\0".to_vec();
        let h = header(
            WavFormat {
                channels: 1,
                sample_rate: 16_000,
            },
            2,
        );
        bytes.extend_from_slice(&h[12..]);
        bytes.extend_from_slice(&[1, 0]);
        let info = parse_header(&bytes).expect("parse");
        assert_eq!(info.format.sample_rate, 16_000);
        assert_eq!(info.data_offset, bytes.len() - 2);
    }

    #[test]
    fn garbage_headers_are_errors_not_panics() {
        assert!(parse_header(b"").is_err());
        assert!(parse_header(b"RIFF\0\0\0\0WAVE").is_err());
        let valid = header(WavFormat::CALL_STEREO, 100);
        let mut rng = Rng::new(0x5eed_0006);
        for _ in 0..20_000 {
            let _ = parse_header(&rng.mutate(&valid));
            let _ = parse_header(&rng.bytes(64));
        }
        // A chunk length near u32::MAX must not overflow the walk.
        let mut huge = b"RIFF\0\0\0\0WAVEjunk\xff\xff\xff\xff".to_vec();
        huge.extend_from_slice(&[0; 16]);
        assert!(parse_header(&huge).is_err());
    }
}
