//! Reading an HTTP body whole, within a size limit.

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;

/// Why a body could not be read whole.
#[derive(Debug)]
pub enum ReadError<E> {
    /// It is longer than the limit (said so up front, or found on the way).
    TooLarge,
    /// The body itself failed (connection lost, malformed chunking).
    Body(E),
}

/// Reads `body` whole, up to `limit` bytes; trailers are ignored. A body that arrives as one frame (nearly
/// every request and answer) is returned as that frame, without a copy or a frame list.
pub async fn read_whole<B: Body<Data = Bytes>>(body: B, limit: usize) -> Result<Bytes, ReadError<B::Error>> {
    let limit = limit as u64;
    if body.size_hint().lower() > limit {
        return Err(ReadError::TooLarge);
    }
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(ReadError::Body)?.into_data() else { continue };
        total += data.len() as u64;
        if total > limit {
            return Err(ReadError::TooLarge);
        }
        match (&mut joined, first.take()) {
            (Some(joined), _) => joined.extend_from_slice(&data),
            (None, None) => first = Some(data),
            (None, Some(head)) => {
                let expected = body.size_hint().upper().unwrap_or(0).min(limit) as usize;
                let mut buf = BytesMut::with_capacity((head.len() + data.len()).max(expected));
                buf.extend_from_slice(&head);
                buf.extend_from_slice(&data);
                joined = Some(buf);
            }
        }
    }
    Ok(match joined {
        Some(joined) => joined.freeze(),
        None => first.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;
    use http_body::Frame;
    use http_body_util::StreamBody;

    fn chunks(parts: &[&'static str]) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, String>>> {
        let frames: Vec<Result<Frame<Bytes>, String>> =
            parts.iter().map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes())))).collect();
        StreamBody::new(stream::iter(frames))
    }

    #[tokio::test]
    async fn joins_frames_in_order_and_keeps_a_single_one_as_is() {
        assert_eq!(read_whole(chunks(&["ab", "", "cd", "e"]), 5).await.unwrap(), "abcde");
        assert_eq!(read_whole(chunks(&["only"]), 4).await.unwrap(), "only");
        assert_eq!(read_whole(chunks(&[]), 0).await.unwrap(), "");
    }

    #[tokio::test]
    async fn stops_at_the_limit() {
        assert!(matches!(read_whole(chunks(&["abc", "def"]), 5).await, Err(ReadError::TooLarge)));
        let declared = http_body_util::Full::new(Bytes::from_static(b"too long"));
        assert!(matches!(read_whole(declared, 3).await, Err(ReadError::TooLarge)));
    }

    #[tokio::test]
    async fn passes_body_errors_on() {
        let failing = StreamBody::new(stream::iter(vec![
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Err::<Frame<Bytes>, _>("reset".to_owned()),
        ]));
        assert!(matches!(read_whole(failing, 10).await, Err(ReadError::Body(e)) if e == "reset"));
    }
}
