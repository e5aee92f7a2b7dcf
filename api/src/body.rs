//! Every request body passes one check on its way in, whichever route reads it (REST, MCP,
//! and any route added later): the router's [`guard`] layer scans the body as it streams
//! and fails the read at the first JSON escape `\u0000`. Postgres can hold NUL in neither
//! text nor JSONB, and one such value in a batched insert would fail the statement for
//! every call sharing it, of every account. Nothing is buffered here; a handler that never
//! reads the body (an unauthenticated request is refused first) never pays for the scan.
//!
//! [`read`] is how a route's body extractor gets the bytes: `crate::error::ApiJson` turns
//! its refusals into the error envelope, MCP into JSON-RPC errors.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use futures_util::StreamExt;

/// The read of a body failed because it holds `\u0000`.
#[derive(Debug, thiserror::Error)]
#[error("Text in the body cannot contain NUL (\\u0000).")]
pub struct NulInBody;

/// Why a body could not be read.
#[derive(Debug)]
pub enum Unread {
    /// Longer than `CLAWLINK_MAX_BODY_BYTES`.
    TooLarge,
    /// A string holds `\u0000` ([`NulInBody`]).
    Nul,
    /// The connection failed, or the body is otherwise unreadable; axum's text.
    Broken(String),
}

impl Unread {
    /// The error code and message an agent gets for it, whatever the protocol.
    pub fn refusal(self) -> (clawlink_common::codes::ErrorCode, String) {
        use clawlink_common::codes::ErrorCode;
        match self {
            Unread::TooLarge => (ErrorCode::BodyTooLarge, "The request body is too large.".into()),
            Unread::Nul => (ErrorCode::InvalidBody, NulInBody.to_string()),
            Unread::Broken(text) => (ErrorCode::InvalidBody, text),
        }
    }
}

/// The layer every request goes through: its body, when read, is scanned for `\u0000`.
pub async fn guard(request: Request) -> Request {
    let (parts, body) = request.into_parts();
    let mut scan = NulScan::default();
    let checked = body.into_data_stream().map(move |chunk| match chunk {
        Ok(bytes) if scan.feed(&bytes) => Err(axum::BoxError::from(NulInBody)),
        Ok(bytes) => Ok(bytes),
        Err(err) => Err(err.into()),
    });
    Request::from_parts(parts, Body::from_stream(checked))
}

/// Reads the whole body, within the router's size limit, through [`guard`]'s check.
pub async fn read<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, Unread> {
    match Bytes::from_request(request, state).await {
        Ok(bytes) => Ok(bytes),
        Err(rejection) if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => Err(Unread::TooLarge),
        Err(rejection) if caused_by_nul(&rejection) => Err(Unread::Nul),
        Err(rejection) => Err(Unread::Broken(rejection.body_text())),
    }
}

/// Whether [`NulInBody`] is in the error's cause chain (axum wraps a body's error in a
/// few layers of its own).
fn caused_by_nul(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if err.is::<NulInBody>() {
            return true;
        }
        next = err.source();
    }
    false
}

/// Finds the escape `\u0000` in JSON text that arrives in pieces. A raw NUL byte is not
/// valid JSON and fails parsing anyway; an escaped backslash followed by `u0000` is text.
#[derive(Default)]
struct NulScan {
    /// How many bytes of `\u0000` the text read so far ends with, inside an escape.
    matched: usize,
}

const NUL_ESCAPE: &[u8] = b"\\u0000";

impl NulScan {
    /// Feeds the next piece; `true` once `\u0000` has been seen.
    fn feed(&mut self, piece: &[u8]) -> bool {
        for &b in piece {
            self.matched = match self.matched {
                0 => usize::from(b == b'\\'),
                // `\` then anything but `u` (`\\`, `\"`, `\n` …) is a whole escape.
                1 => {
                    if b == b'u' {
                        2
                    } else {
                        0
                    }
                }
                k if b == NUL_ESCAPE[k] => {
                    if k + 1 == NUL_ESCAPE.len() {
                        return true;
                    }
                    k + 1
                }
                // Another `\uXXXX`: it ends here, and a backslash here starts the next one.
                _ => usize::from(b == b'\\'),
            };
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_nul(text: &[u8]) -> bool {
        let whole = NulScan::default().feed(text);
        // The same answer however the text is cut into two pieces.
        for cut in 0..=text.len() {
            let mut scan = NulScan::default();
            let split = scan.feed(&text[..cut]) || scan.feed(&text[cut..]);
            assert_eq!(split, whole, "{:?} cut at {cut}", String::from_utf8_lossy(text));
        }
        whole
    }

    #[test]
    fn nul_escapes_are_found_and_escaped_backslashes_are_not() {
        assert!(has_nul(br#"{"a":"x\u0000y"}"#));
        assert!(has_nul(br#"{"\u0000":1}"#));
        assert!(!has_nul(br#"{"a":"x\\u0000y"}"#));
        assert!(has_nul(br#"{"a":"x\\\u0000y"}"#));
        assert!(has_nul(br#"{"a":"\u00001"}"#));
        assert!(has_nul(br#"{"a":"\u00e9\u0000"}"#));
        assert!(has_nul(br#"{"a":"\u00\u0000"}"#));
        assert!(!has_nul(br#"{"a":"\u00e9 \u0001 \"u0000"}"#));
        assert!(!has_nul(b"{}"));
        assert!(!has_nul(b"\\"));
    }

    #[tokio::test]
    async fn a_body_read_through_the_guard_fails_at_a_nul_whatever_the_chunks() {
        let chunks = [r#"{"arguments":{"message":"a\u00"#, r#"00b"}}"#];
        let stream = futures_util::stream::iter(chunks.map(|c| Ok::<_, std::io::Error>(Bytes::from(c))));
        let request = Request::builder().body(Body::from_stream(stream)).unwrap();
        let refused = read(guard(request).await, &()).await;
        assert!(matches!(refused, Err(Unread::Nul)), "{refused:?}");

        let request = Request::builder().body(Body::from(r#"{"message":"a\\u0000b"}"#)).unwrap();
        let text = read(guard(request).await, &()).await.expect("an escaped backslash is text");
        assert_eq!(&text[..], br#"{"message":"a\\u0000b"}"#);
    }
}
