//! Newline-delimited framing with a size cap, used on both ends of the socket
//! and on the shim's stdio.
//!
//! An over-long line is discarded up to its newline and reported, so one bad
//! message never desynchronises or kills the connection. Bytes read but not
//! yet framed live in the [`FrameReader`], not in the future reading them,
//! so a read that loses a `select!` race loses no bytes (as mini-redis's
//! `Connection`).
//!
//! Each read lands in a buffer on the stack of the poll and is copied out
//! before the poll returns, so a reader waiting for its next line holds no
//! heap at all: the daemon keeps thousands of idle sessions, and a
//! `BufReader` would hold its whole buffer in every one of them.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The most one read asks for (the size of the stack buffer).
const MAX_CHUNK: usize = 16 * 1024;

/// One frame read from a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, without its newline (a trailing `\r` is removed too).
    Line(Vec<u8>),
    /// A line longer than the cap; its bytes were discarded.
    TooLong { len: usize },
    /// End of stream.
    Eof,
}

/// Reads newline-delimited frames of at most `max` bytes from a stream.
pub struct FrameReader<R> {
    read: R,
    /// Bytes read and not yet framed: the start of the next line, and any
    /// lines after it that came in the same read.
    pending: Vec<u8>,
    /// `pending[..scanned]` holds no newline.
    scanned: usize,
    /// Bytes of an over-long line dropped so far (0: not in one).
    discarded: usize,
    max: usize,
    /// Bytes one read asks for.
    chunk: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader of lines up to `max` bytes.
    pub fn new(read: R, max: usize) -> Self {
        Self::with_chunk(MAX_CHUNK, read, max)
    }

    /// Like [`Self::new`], reading at most `chunk` bytes at a time (at most
    /// 16 KiB; tests use tiny chunks to split lines).
    pub fn with_chunk(chunk: usize, read: R, max: usize) -> Self {
        Self {
            read,
            pending: Vec::new(),
            scanned: 0,
            discarded: 0,
            max,
            chunk: chunk.clamp(1, MAX_CHUNK),
        }
    }

    /// Changes the cap for lines not yet started.
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Reads the next frame.
    ///
    /// Cancel-safe: the only await is one read, whose bytes are moved into
    /// `self.pending` in the same poll that reads them.
    pub async fn next(&mut self) -> io::Result<Frame> {
        loop {
            if let Some(frame) = self.frame() {
                return Ok(frame);
            }
            if std::future::poll_fn(|cx| self.poll_fill(cx)).await? == 0 {
                // EOF: a final unterminated line still counts as a message.
                if self.pending.is_empty() && self.discarded == 0 {
                    return Ok(Frame::Eof);
                }
                let line = std::mem::take(&mut self.pending);
                self.scanned = 0;
                return Ok(self.finish(line));
            }
        }
    }

    /// The next complete frame among the bytes already read, if any.
    fn frame(&mut self) -> Option<Frame> {
        match self.pending[self.scanned..]
            .iter()
            .position(|&b| b == b'\n')
        {
            Some(i) => {
                let newline = self.scanned + i;
                let rest = self.pending.split_off(newline + 1);
                let mut line = std::mem::replace(&mut self.pending, rest);
                line.pop();
                self.scanned = 0;
                Some(self.finish(line))
            }
            None => {
                if self.discarded > 0 || self.pending.len() > self.max {
                    self.discarded += self.pending.len();
                    self.pending = Vec::new();
                }
                self.scanned = self.pending.len();
                None
            }
        }
    }

    /// One read into `self.pending`; 0 at EOF.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut chunk = [MaybeUninit::<u8>::uninit(); MAX_CHUNK];
        let mut buf = ReadBuf::uninit(&mut chunk[..self.chunk]);
        ready!(Pin::new(&mut self.read).poll_read(cx, &mut buf))?;
        self.pending.extend_from_slice(buf.filled());
        Poll::Ready(Ok(buf.filled().len()))
    }

    /// The frame for `line` (its newline removed); resets for the next one.
    fn finish(&mut self, line: Vec<u8>) -> Frame {
        let discarded = std::mem::take(&mut self.discarded);
        if discarded > 0 || line.len() > self.max {
            Frame::TooLong {
                len: discarded + line.len(),
            }
        } else {
            Frame::Line(trim_cr(line))
        }
    }
}

fn trim_cr(mut line: Vec<u8>) -> Vec<u8> {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    line
}

/// Writes `bytes` plus a newline in one write, and flushes.
pub async fn write_line<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
) -> std::io::Result<()> {
    let mut line = Vec::with_capacity(bytes.len() + 1);
    line.extend_from_slice(bytes);
    line.push(b'\n');
    write_owned_line(writer, line).await
}

/// Writes `line`, which must already end in a newline, and flushes.
pub async fn write_owned_line<W: AsyncWrite + Unpin>(
    writer: &mut W,
    line: Vec<u8>,
) -> std::io::Result<()> {
    writer.write_all(&line).await?;
    writer.flush().await
}

/// Serialises `value` as one JSON line.
pub async fn write_json<W: AsyncWrite + Unpin, T: serde::Serialize>(
    writer: &mut W,
    value: &T,
) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value)?;
    write_line(writer, &bytes).await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], max: usize) -> Vec<Frame> {
        let mut reader = FrameReader::with_chunk(4, input, max);
        let mut out = Vec::new();
        loop {
            let frame = reader.next().await.unwrap();
            let eof = frame == Frame::Eof;
            out.push(frame);
            if eof {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn splits_lines_across_small_buffers() {
        let got = frames(b"hello world\r\nsecond\nlast", 64).await;
        assert_eq!(
            got,
            vec![
                Frame::Line(b"hello world".to_vec()),
                Frame::Line(b"second".to_vec()),
                Frame::Line(b"last".to_vec()),
                Frame::Eof
            ]
        );
    }

    #[tokio::test]
    async fn over_long_line_is_skipped_and_stream_continues() {
        let got = frames(b"0123456789abcdef\nok\n", 8).await;
        assert_eq!(
            got,
            vec![
                Frame::TooLong { len: 16 },
                Frame::Line(b"ok".to_vec()),
                Frame::Eof
            ]
        );
    }

    #[tokio::test]
    async fn a_line_longer_than_a_read_arrives_whole_and_leaves_nothing_held() {
        let long: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut input = long.clone();
        input.extend_from_slice(b"\nnext\n");
        let mut reader = FrameReader::new(&input[..], 1 << 20);
        assert_eq!(reader.next().await.unwrap(), Frame::Line(long));
        assert_eq!(reader.next().await.unwrap(), Frame::Line(b"next".to_vec()));
        // Waiting for the next line holds no buffer.
        assert_eq!(reader.pending.capacity(), 0);
        assert_eq!(reader.next().await.unwrap(), Frame::Eof);
    }

    /// Delivers its bytes `chunk` at a time, answering `Pending` before each.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        chunk: usize,
        ready: bool,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            if !self.ready {
                self.ready = true;
                cx.waker().wake_by_ref();
                return std::task::Poll::Pending;
            }
            self.ready = false;
            let end = (self.pos + self.chunk)
                .min(self.data.len())
                .min(self.pos + buf.remaining());
            buf.put_slice(&self.data[self.pos..end]);
            self.pos = end;
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_read_that_loses_a_select_race_loses_no_bytes() {
        let whole: Vec<u8> = (0..50u8).map(|i| b'a' + i % 26).collect();
        let mut input = whole.clone();
        input.push(b'\n');
        input.extend_from_slice(&[b'x'; 100]);
        input.extend_from_slice(b"\nlast");
        let trickle = Trickle {
            data: input,
            pos: 0,
            chunk: 3,
            ready: false,
        };
        let mut reader = FrameReader::with_chunk(16, trickle, 64);
        let mut got = Vec::new();
        let mut lost_races = 0;
        while got.last() != Some(&Frame::Eof) {
            // The other branch wins whenever the read has to wait, which
            // drops the read future between every two chunks.
            tokio::select! {
                biased;
                frame = reader.next() => got.push(frame.unwrap()),
                () = std::future::ready(()) => lost_races += 1,
            }
        }
        assert!(lost_races > 50, "the read was never interrupted");
        assert_eq!(
            got,
            vec![
                Frame::Line(whole),
                Frame::TooLong { len: 100 },
                Frame::Line(b"last".to_vec()),
                Frame::Eof
            ]
        );
    }
}
