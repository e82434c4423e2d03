//! Lines from a CLI's output with a cap on their length, so a CLI that
//! prints megabytes without a newline cannot make the plugin hold them all.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One item of [`Lines::next`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line, without its `\n`.
    Text(Vec<u8>),
    /// A line longer than the cap; only its length is known.
    TooLong(usize),
}

/// Reads `\n`-separated lines of at most `max` bytes.
pub struct Lines<R> {
    reader: R,
    line: Vec<u8>,
    /// Bytes of an over-long line dropped so far (0: not in one).
    dropped: usize,
    max: usize,
}

impl<R: AsyncBufRead + Unpin> Lines<R> {
    /// Lines of `reader`, each at most `max` bytes.
    pub fn new(reader: R, max: usize) -> Self {
        Lines {
            reader,
            line: Vec::new(),
            dropped: 0,
            max,
        }
    }

    /// The next line; `None` at the end of the stream (a last line without
    /// `\n` is still returned).
    ///
    /// Cancel-safe: the only await is `fill_buf`, which keeps what it read;
    /// bytes leave the buffer (`consume`) in the same poll that moves them
    /// into `self.line`.
    pub async fn next(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                return Ok(self.take());
            }
            let (chunk, end) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            if self.dropped > 0 || self.line.len() + chunk.len() > self.max {
                self.dropped += self.line.len() + chunk.len();
                self.line.clear();
            } else {
                self.line.extend_from_slice(chunk);
            }
            let used = end.unwrap_or(buf.len());
            self.reader.consume(used);
            if end.is_some() {
                return Ok(self.take().or(Some(Line::Text(Vec::new()))));
            }
        }
    }

    fn take(&mut self) -> Option<Line> {
        if self.dropped > 0 {
            return Some(Line::TooLong(std::mem::take(&mut self.dropped)));
        }
        (!self.line.is_empty()).then(|| Line::Text(std::mem::take(&mut self.line)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn splits_and_caps() {
        let input: &[u8] = b"one\n\ntoo long line\nlast";
        let mut lines = Lines::new(tokio::io::BufReader::with_capacity(4, input), 8);
        let mut out = Vec::new();
        while let Some(line) = lines.next().await.unwrap() {
            out.push(line);
        }
        assert_eq!(
            out,
            vec![
                Line::Text(b"one".to_vec()),
                Line::Text(Vec::new()),
                Line::TooLong(13),
                Line::Text(b"last".to_vec()),
            ]
        );
    }
}
