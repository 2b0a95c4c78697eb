//! A minimal Server-Sent Events reader over reqwest (no streaming feature needed: it
//! reads the body chunk by chunk) — enough for `GET /ledger/events/stream`, whose events
//! are `id:` and `data:` lines (and `event: overflow` once, at the end, for a client too
//! slow to keep up), with `:` keep-alive comments in between.

use reqwest::Client;

/// One event of the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// Its `id:` (the feed event's id).
    pub id: String,
    /// Its `event:` name (`None`: a plain message, i.e. a feed event).
    pub kind: Option<String>,
    /// Its `data:` lines, joined with `\n`.
    pub data: Vec<u8>,
}

/// An open stream.
#[derive(Debug)]
pub struct SseStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
    /// Where the unread part of `buffer` starts.
    start: usize,
    /// Where in `buffer` the search for the end of an event resumes.
    scanned: usize,
}

impl SseStream {
    /// `GET url` with `Accept: text/event-stream`; fails unless it answers 200.
    pub async fn open(client: &Client, url: &str) -> Result<SseStream, String> {
        let response = client
            .get(url)
            .header("accept", "text/event-stream")
            .timeout(std::time::Duration::from_secs(24 * 3600))
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", crate::phase::chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(format!("GET {url} answered {status}: {body}"));
        }
        Ok(SseStream {
            response,
            buffer: Vec::with_capacity(64 * 1024),
            start: 0,
            scanned: 0,
        })
    }

    /// The next event (comments skipped); `None` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<SseEvent>, String> {
        loop {
            if let Some(end) = find_blank_line(&self.buffer, self.scanned.max(self.start)) {
                let event = parse(&self.buffer[self.start..end]);
                self.start = end + 2;
                self.scanned = self.start;
                match event {
                    Some(event) => return Ok(Some(event)),
                    None => continue,
                }
            }
            // Consumed bytes are dropped only once they are most of the buffer, so each
            // byte moves at most about once.
            if self.start > self.buffer.len() / 2 {
                self.buffer.drain(..self.start);
                self.start = 0;
            }
            self.scanned = self.buffer.len().saturating_sub(1).max(self.start);
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                Ok(None) => return Ok(None),
                Err(e) => return Err(format!("reading the stream: {}", crate::phase::chain(&e))),
            }
        }
    }
}

/// The index of the first `\n\n` at or after `from`.
fn find_blank_line(buffer: &[u8], from: usize) -> Option<usize> {
    memchr::memmem::find(buffer.get(from..)?, b"\n\n").map(|at| at + from)
}

/// One event's lines; `None` for a block of comments only.
fn parse(block: &[u8]) -> Option<SseEvent> {
    let mut event = SseEvent::default();
    let mut any = false;
    let mut rest = block;
    while !rest.is_empty() {
        let line = match memchr::memchr(b'\n', rest) {
            Some(at) => {
                let line = &rest[..at];
                rest = &rest[at + 1..];
                line
            }
            None => std::mem::take(&mut rest),
        };
        let (field, value) = match memchr::memchr(b':', line) {
            Some(0) => continue,
            Some(at) => {
                let value = &line[at + 1..];
                (&line[..at], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        any = true;
        match field {
            b"id" => event.id = String::from_utf8_lossy(value).into_owned(),
            b"event" => event.kind = Some(String::from_utf8_lossy(value).into_owned()),
            b"data" => {
                if !event.data.is_empty() {
                    event.data.push(b'\n');
                }
                event.data.extend_from_slice(value);
            }
            _ => {}
        }
    }
    any.then_some(event)
}

/// The `adId` in an event's `"subject":"publisher/{p}/ad/{adId}"`.
pub fn subject_ad_id(data: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"subject\":\"publisher/";
    let start = memchr::memmem::find(data, KEY)? + KEY.len();
    let rest = &data[start..];
    let quote = rest.iter().position(|&b| b == b'"')?;
    let subject = std::str::from_utf8(&rest[..quote]).ok()?;
    subject.rsplit_once("/ad/").map(|(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_comments_are_told_apart() {
        let text =
            b": keep-alive\n\nid: 1-0\ndata: {\"a\":1}\n\nevent: overflow\ndata: x\ndata: y\n\n";
        assert_eq!(find_blank_line(text, 0), Some(12));
        assert_eq!(parse(&text[..12]), None);
        let event = parse(b"id: 1-0\ndata: {\"a\":1}").expect("event");
        assert_eq!(event.id, "1-0");
        assert_eq!(event.data, b"{\"a\":1}");
        let overflow = parse(b"event: overflow\ndata: x\ndata: y").expect("event");
        assert_eq!(overflow.kind.as_deref(), Some("overflow"));
        assert_eq!(overflow.data, b"x\ny");
    }

    #[test]
    fn the_subject_names_the_ad() {
        let data =
            br#"{"specversion":"1.0","id":"x","subject":"publisher/acme/ad/01ABC","time":"t"}"#;
        assert_eq!(subject_ad_id(data), Some("01ABC"));
        assert_eq!(
            subject_ad_id(b"{\"type\":\"adledger.ledger.digest\"}"),
            None
        );
    }
}
