//! Spreads a plugin's calls in flight over several HTTP clients, so that no
//! HTTP/2 connection carries more streams than its server allows, and a
//! burst of calls opens one connection per client instead of one per call.
//!
//! An HTTP client (reqwest, hyper) sends every request to one host over a
//! single HTTP/2 connection, and queues the requests beyond the server's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` until streams ahead of them end: for
//! model calls that is the whole length of the answers ahead. [`Lanes`] hands
//! each call the client with the fewest calls in flight, and makes one more
//! client (its own pool, so its own connection) once every client carries
//! [`STREAMS_PER_LANE`].
//!
//! Until a client has a connection it cannot know whether the server speaks
//! HTTP/2 (ALPN tells only once connected), so every call of a burst would
//! start a TLS handshake of its own, all but one thrown away. So the first
//! call on an idle client opens the way: the others wait
//! ([`Ticket::ready`]) until its request is being sent
//! ([`Ticket::opening_body`] tells), then share its HTTP/2 connection, or
//! open their own over HTTP/1.1, a handshake later.
//!
//! That first request's body is a stream, which an HTTP client cannot send
//! again by itself when the server refuses the request unprocessed (HTTP/2
//! `REFUSED_STREAM`, or a `GOAWAY` before it), as reqwest does for whole
//! bodies; [`is_unprocessed`] tells the plugin when it may send it once more.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

/// Calls in flight per client before another is made: below the 100 streams
/// that the most cautious public HTTP/2 servers allow, so a call never waits
/// on another's stream.
pub const STREAMS_PER_LANE: usize = 64;

/// The longest a call waits, by default, for the first call on its client
/// to get its connection before going ahead on its own.
pub const OPENING_WAIT: Duration = Duration::from_secs(15);

/// Clients of type `T` (e.g. `reqwest::Client`) that calls take turns on.
pub struct Lanes<T> {
    make: Box<dyn Fn() -> Option<T> + Send + Sync>,
    per_lane: usize,
    opening_wait: Duration,
    lanes: Mutex<Vec<Lane<T>>>,
}

struct Lane<T> {
    client: T,
    in_flight: Arc<AtomicUsize>,
    gate: Arc<Gate>,
}

/// Whether a client's connection is up, and who waits for it.
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    opened: Notify,
}

impl Gate {
    fn open(&self) {
        if !self.open.swap(true, Ordering::AcqRel) {
            self.opened.notify_waiters();
        }
    }
}

/// One call's client; the call counts against its lane until this drops.
pub struct Ticket<T> {
    client: T,
    in_flight: Arc<AtomicUsize>,
    gate: Arc<Gate>,
    /// The first call on an idle client: the others wait for its connection.
    opener: bool,
    opening_wait: Duration,
}

impl<T: Clone> Lanes<T> {
    /// Builds the first client with `make`, which builds each further one
    /// too (when it fails then, the least busy client is shared instead).
    pub fn new<E>(make: impl Fn() -> Result<T, E> + Send + Sync + 'static) -> Result<Self, E> {
        let first = make()?;
        Ok(Lanes {
            make: Box::new(move || make().ok()),
            per_lane: STREAMS_PER_LANE,
            opening_wait: OPENING_WAIT,
            lanes: Mutex::new(vec![Lane::new(first)]),
        })
    }

    /// Sets the calls in flight per client (at least 1).
    pub fn with_streams_per_lane(mut self, per_lane: usize) -> Self {
        self.per_lane = per_lane.max(1);
        self
    }

    /// Sets the longest a call waits for its client's first connection.
    pub fn with_opening_wait(mut self, wait: Duration) -> Self {
        self.opening_wait = wait;
        self
    }

    /// The client for one call: the least busy one, or a new one when every
    /// client is full. Send its body through [`Ticket::send`], which waits
    /// for the client's connection when another call is opening it.
    pub fn take(&self) -> Ticket<T> {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        let (least, busy) = lanes
            .iter()
            .enumerate()
            .map(|(i, lane)| (i, lane.in_flight.load(Ordering::Acquire)))
            .min_by_key(|&(_, busy)| busy)
            .expect("there is always a first lane");
        let index = if busy < self.per_lane {
            least
        } else if let Some(client) = (self.make)() {
            lanes.push(Lane::new(client));
            lanes.len() - 1
        } else {
            least
        };
        let lane = &lanes[index];
        // Idle clients may have lost their connection (idle timeout,
        // GOAWAY), so the first call after a lull opens the way again; if
        // the connection is still there, its request goes at once and so
        // do the others.
        let opener = lane.in_flight.fetch_add(1, Ordering::AcqRel) == 0;
        if opener {
            lane.gate.open.store(false, Ordering::Release);
        }
        Ticket {
            client: lane.client.clone(),
            in_flight: lane.in_flight.clone(),
            gate: lane.gate.clone(),
            opener,
            opening_wait: self.opening_wait,
        }
    }

    /// How many clients there are now.
    pub fn len(&self) -> usize {
        self.lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Always false: there is at least the first client.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl<T> Lane<T> {
    fn new(client: T) -> Self {
        Lane {
            client,
            in_flight: Arc::default(),
            gate: Arc::default(),
        }
    }
}

impl<T> Ticket<T> {
    /// Waits until the first call on this client has its connection (at
    /// most [`OPENING_WAIT`] unless set otherwise); at once for that first
    /// call itself.
    pub async fn ready(&self) {
        if self.opener {
            return;
        }
        let wait = async {
            loop {
                let opened = self.gate.opened.notified();
                tokio::pin!(opened);
                opened.as_mut().enable();
                if self.gate.open.load(Ordering::Acquire) {
                    return;
                }
                opened.await;
            }
        };
        let _ = tokio::time::timeout(self.opening_wait, wait).await;
    }

    /// Says the request is on its way, so the connection is up: the calls
    /// waiting in [`Ticket::ready`] go. An [`OpeningBody`] does it when it
    /// is sent; dropping the ticket does it too.
    pub fn opened(&self) {
        if self.opener {
            self.gate.open();
        }
    }

    /// For the first call on an idle client, a request body that calls
    /// [`Ticket::opened`] when the HTTP client starts sending it, which it
    /// does once it has a connection; `None` for every other call, which
    /// sends its bytes as a whole body.
    pub fn opening_body(&self, bytes: impl Into<Bytes>) -> Option<OpeningBody> {
        self.opener.then(|| OpeningBody {
            bytes: Some(bytes.into()),
            gate: Some(self.gate.clone()),
        })
    }
}

/// A request body as [`Ticket::send`] hands it to the plugin's client.
pub enum Outgoing {
    /// The first call on an idle client: tells the others when it is sent.
    Opening(OpeningBody),
    /// Any other call, or the second try of a refused first one.
    Whole(Bytes),
}

impl<T> Ticket<T> {
    /// Sends `bytes` as a request body through `send`: as an
    /// [`Outgoing::Opening`] body on the first call on an idle client,
    /// sent once more as a whole body if the server refused it unprocessed
    /// ([`is_unprocessed`]; an HTTP client re-sends only whole bodies by
    /// itself), and as [`Outgoing::Whole`] on every other call, once
    /// [`Ticket::ready`].
    pub async fn send<R, E, Fut>(
        &self,
        bytes: impl Into<Bytes>,
        send: impl Fn(Outgoing) -> Fut,
    ) -> Result<R, E>
    where
        Fut: Future<Output = Result<R, E>>,
        E: std::error::Error + 'static,
    {
        self.ready().await;
        let bytes = bytes.into();
        let Some(opening) = self.opening_body(bytes.clone()) else {
            return send(Outgoing::Whole(bytes)).await;
        };
        let sent = send(Outgoing::Opening(opening)).await;
        // Sent or failed, the calls waiting on this one go: a request that
        // could not connect must not hold them back for its whole call.
        self.opened();
        match sent {
            Err(err) if is_unprocessed(&err) => send(Outgoing::Whole(bytes)).await,
            other => other,
        }
    }
}

/// Whether `err` (or an error it was caused by) is an HTTP/2 refusal that
/// guarantees the server did not process the request (RFC 9113 §8.7): a
/// `REFUSED_STREAM` reset, or a graceful `GOAWAY` that came before it. Such
/// a request may be sent again; nothing was done, so nothing is paid twice.
pub fn is_unprocessed(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            let refused = h2.is_reset() && h2.reason() == Some(h2::Reason::REFUSED_STREAM);
            let went_away = h2.is_go_away() && h2.reason() == Some(h2::Reason::NO_ERROR);
            return h2.is_remote() && (refused || went_away);
        }
        source = err.source();
    }
    false
}

impl<T> Deref for Ticket<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.client
    }
}

impl<T> Drop for Ticket<T> {
    fn drop(&mut self) {
        // A call that failed to connect must not hold the others back.
        self.opened();
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A whole request body (`http_body::Body`, exact length) that opens its
/// client's gate when first polled; from [`Ticket::opening_body`].
pub struct OpeningBody {
    bytes: Option<Bytes>,
    gate: Option<Arc<Gate>>,
}

impl Body for OpeningBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(gate) = self.gate.take() {
            gate.open();
        }
        Poll::Ready(self.bytes.take().map(|bytes| Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.bytes.as_ref().map_or(0, |b| b.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn numbered(per_lane: usize) -> Lanes<u32> {
        let next = AtomicU32::new(0);
        Lanes::new(move || Ok::<_, ()>(next.fetch_add(1, Ordering::Relaxed)))
            .unwrap()
            .with_streams_per_lane(per_lane)
    }

    #[test]
    fn a_lane_fills_before_another_is_made() {
        let lanes = numbered(2);
        let held: Vec<_> = (0..5).map(|_| lanes.take()).collect();
        let clients: Vec<u32> = held.iter().map(|t| **t).collect();
        assert_eq!(clients, vec![0, 0, 1, 1, 2]);
        assert_eq!(lanes.len(), 3);
    }

    #[test]
    fn a_finished_call_frees_its_place_for_the_next() {
        let lanes = numbered(2);
        let mut held: Vec<_> = (0..4).map(|_| lanes.take()).collect();
        // Lane 0 gets a free place when one of its calls ends.
        held.remove(0);
        assert_eq!(*lanes.take(), 0);
        assert_eq!(lanes.len(), 2, "no new client while one has room");
        // Once everything ends, calls go back to the least busy client.
        drop(held);
        assert_eq!(*lanes.take(), 0);
    }

    #[test]
    fn a_client_that_cannot_be_made_shares_the_least_busy() {
        let made = AtomicU32::new(0);
        let only_once = move || match made.fetch_add(1, Ordering::Relaxed) {
            0 => Ok(7u32),
            _ => Err("no more clients"),
        };
        let lanes = Lanes::new(only_once).unwrap().with_streams_per_lane(1);
        let (a, b) = (lanes.take(), lanes.take());
        assert_eq!((*a, *b), (7, 7));
        assert_eq!(lanes.len(), 1);
    }

    /// Whether `ticket.ready()` is done (a waiting one cannot become ready
    /// by itself, so the short wait makes no test flaky).
    async fn is_ready(ticket: &Ticket<u32>) -> bool {
        tokio::time::timeout(Duration::from_millis(1), ticket.ready())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn the_others_wait_until_the_first_request_is_sent() {
        let lanes = numbered(10);
        let first = lanes.take();
        let second = lanes.take();
        assert!(is_ready(&first).await, "the first call never waits");
        assert!(
            !is_ready(&second).await,
            "the second waits for a connection"
        );
        assert!(
            second.opening_body("{}").is_none(),
            "only the first call's body tells"
        );
        let mut body = std::pin::pin!(first.opening_body("{}").unwrap());
        assert_eq!(body.size_hint().exact(), Some(2));
        let frame = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
        assert_eq!(frame.unwrap().unwrap().into_data().unwrap(), "{}");
        assert!(body.is_end_stream());
        assert!(is_ready(&second).await, "sending the body opened the way");
    }

    #[tokio::test]
    async fn a_first_call_that_ends_unsent_lets_the_others_go() {
        let lanes = numbered(10);
        let first = lanes.take();
        let second = lanes.take();
        drop(first);
        assert!(is_ready(&second).await);
        // The lane is busy, so a third call goes at once as well.
        assert!(is_ready(&lanes.take()).await);
    }

    #[tokio::test]
    async fn after_a_lull_the_first_call_opens_the_way_again() {
        let lanes = numbered(10);
        let first = lanes.take();
        first.opened();
        drop(first);
        let again = lanes.take();
        let other = lanes.take();
        assert!(!is_ready(&other).await);
        again.opened();
        assert!(is_ready(&other).await);
    }

    #[test]
    fn only_a_refusal_before_processing_counts_as_unprocessed() {
        #[derive(Debug)]
        struct Wrapped(h2::Error);
        impl std::fmt::Display for Wrapped {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("request failed")
            }
        }
        impl std::error::Error for Wrapped {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        // h2 builds remote errors only from frames; a local one never counts.
        let local = Wrapped(h2::Error::from(h2::Reason::REFUSED_STREAM));
        assert!(!is_unprocessed(&local));
        let io = std::io::Error::other("connection reset");
        assert!(!is_unprocessed(&io));
    }

    #[tokio::test]
    async fn the_first_call_sends_an_opening_body_and_the_others_whole_ones() {
        let lanes = numbered(10);
        let (first, second) = (lanes.take(), lanes.take());
        let sent = std::sync::Mutex::new(Vec::new());
        let send = |outgoing: Outgoing| {
            sent.lock().unwrap().push(match outgoing {
                Outgoing::Opening(_) => "opening",
                Outgoing::Whole(_) => "whole",
            });
            async { Err::<(), _>(std::io::Error::other("connection reset")) }
        };
        // A failure that may have reached the server is not sent again.
        assert!(first.send("{}", send).await.is_err());
        assert!(second.send("{}", send).await.is_err());
        assert_eq!(*sent.lock().unwrap(), ["opening", "whole"]);
    }

    #[tokio::test]
    async fn nobody_waits_longer_than_the_opening_wait() {
        let lanes = numbered(10).with_opening_wait(Duration::from_millis(50));
        let _stuck = lanes.take();
        let waiting = lanes.take();
        let started = std::time::Instant::now();
        waiting.ready().await;
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
