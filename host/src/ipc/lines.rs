//! Newline-delimited framing with a size cap, used on both ends of the socket.
//!
//! An over-long line is discarded up to its newline and reported, so one bad
//! message never desynchronises or kills the connection.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

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

/// Reads the next line of at most `max` bytes.
pub async fn read_frame<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Frame> {
    let mut line = Vec::new();
    let mut discarded = 0usize;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            // EOF: a final unterminated line still counts as a message.
            return Ok(if discarded > 0 {
                Frame::TooLong { len: discarded }
            } else if line.is_empty() {
                Frame::Eof
            } else {
                Frame::Line(trim_cr(line))
            });
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if discarded > 0 || line.len() + chunk.len() > max {
            discarded += line.len() + chunk.len();
            line = Vec::new();
        } else {
            line.extend_from_slice(chunk);
        }
        let consumed = done.unwrap_or(available.len());
        reader.consume(consumed);
        if done.is_some() {
            return Ok(if discarded > 0 {
                Frame::TooLong { len: discarded }
            } else {
                Frame::Line(trim_cr(line))
            });
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
        let mut reader = tokio::io::BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        loop {
            let frame = read_frame(&mut reader, max).await.unwrap();
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
}
