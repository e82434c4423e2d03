//! Newline-delimited framing with a size cap, used on both ends of the socket
//! and on the shim's stdio.
//!
//! An over-long line is discarded up to its newline and reported, so one bad
//! message never desynchronises or kills the connection. The partial line
//! lives in the [`FrameReader`], not in the future reading it, so a read that
//! loses a `select!` race loses no bytes (as mini-redis's `Connection`).

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

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
    inner: BufReader<R>,
    /// The line read so far.
    line: Vec<u8>,
    /// Bytes of an over-long line dropped so far (0: not in one).
    discarded: usize,
    max: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader of lines up to `max` bytes.
    pub fn new(read: R, max: usize) -> Self {
        Self::with_capacity(64 * 1024, read, max)
    }

    /// Like [`Self::new`] with a read buffer of `capacity` bytes.
    pub fn with_capacity(capacity: usize, read: R, max: usize) -> Self {
        Self {
            inner: BufReader::with_capacity(capacity, read),
            line: Vec::new(),
            discarded: 0,
            max,
        }
    }

    /// Changes the cap for lines not yet started.
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Reads the next frame.
    ///
    /// Cancel-safe: the only await is `fill_buf`, which keeps what it read
    /// in the buffer; bytes leave the buffer (`consume`) in the same poll
    /// that appends them to `self.line`.
    pub async fn next(&mut self) -> io::Result<Frame> {
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                // EOF: a final unterminated line still counts as a message.
                return Ok(if self.line.is_empty() && self.discarded == 0 {
                    Frame::Eof
                } else {
                    self.take()
                });
            }
            let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], Some(i + 1)),
                None => (available, None),
            };
            if self.discarded > 0 || self.line.len() + chunk.len() > self.max {
                self.discarded += self.line.len() + chunk.len();
                self.line = Vec::new();
            } else {
                self.line.extend_from_slice(chunk);
            }
            let consumed = done.unwrap_or(available.len());
            self.inner.consume(consumed);
            if done.is_some() {
                return Ok(self.take());
            }
        }
    }

    /// The frame ended by a newline or EOF; resets for the next one.
    fn take(&mut self) -> Frame {
        let discarded = std::mem::take(&mut self.discarded);
        let line = std::mem::take(&mut self.line);
        if discarded > 0 {
            Frame::TooLong { len: discarded }
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
        let mut reader = FrameReader::with_capacity(4, input, max);
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
        let mut reader = FrameReader::with_capacity(16, trickle, 64);
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
