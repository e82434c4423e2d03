//! An HTTPS front for a plain-HTTP stand-in, speaking what api.poe.com
//! speaks: TLS on 127.0.0.1 with ALPN `h2` (and `http/1.1` for clients
//! that do not offer h2), relaying every request to the stand-in behind it.
//!
//! Its certificate is signed by a throwaway CA made at start; a client trusts
//! it through the standard `SSL_CERT_FILE` variable ([`TlsFront::ca_file`]),
//! so the client under test runs its production TLS path unchanged. The
//! HTTP/2 side advertises a chosen `SETTINGS_MAX_CONCURRENT_STREAMS`, the
//! limit a real server sets and a client must live with.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use futures::TryStreamExt;
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use poe_plugin_api::lanes::Lanes;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

type Body = BoxBody<Bytes, std::io::Error>;

/// A running HTTPS front on `127.0.0.1:<random port>`; it stops accepting
/// when dropped.
pub struct TlsFront {
    addr: SocketAddr,
    ca_file: tempfile::NamedTempFile,
    connections: Arc<AtomicU64>,
    streams: Arc<Streams>,
    accept: JoinHandle<()>,
}

/// Requests being answered now, and the most ever at once on any one
/// connection.
#[derive(Default)]
struct Streams {
    now: AtomicUsize,
    peak_per_connection: AtomicUsize,
}

/// One request being answered; counted until its answer is relayed whole.
struct Open {
    streams: Arc<Streams>,
    connection: Arc<AtomicUsize>,
}

impl Open {
    fn new(streams: &Arc<Streams>, connection: &Arc<AtomicUsize>) -> Open {
        streams.now.fetch_add(1, Ordering::AcqRel);
        let on_connection = connection.fetch_add(1, Ordering::AcqRel) + 1;
        streams
            .peak_per_connection
            .fetch_max(on_connection, Ordering::AcqRel);
        Open {
            streams: streams.clone(),
            connection: connection.clone(),
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.streams.now.fetch_sub(1, Ordering::AcqRel);
        self.connection.fetch_sub(1, Ordering::AcqRel);
    }
}

impl TlsFront {
    /// Serves HTTPS in front of `upstream` (an `http://127.0.0.1:PORT` root),
    /// allowing each HTTP/2 connection `max_streams` concurrent streams.
    pub async fn start(upstream: &str, max_streams: u32) -> TlsFront {
        let (ca_pem, chain, key) = certificates();
        let mut ca_file = tempfile::NamedTempFile::new().expect("CA file");
        std::io::Write::write_all(&mut ca_file, ca_pem.as_bytes()).expect("write CA file");

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let upstream = upstream.trim_end_matches('/').to_string();
        // The relay's own hop is h2c to the stand-in (wiremock serves it),
        // spread over clients as the plugins do: one HTTP/1.1 connection
        // per call would flood the stand-in's accept queue, and dropped SYNs
        // cost a second each.
        let h2c = || reqwest::Client::builder().http2_prior_knowledge().build();
        let client = Arc::new(Lanes::new(h2c).expect("relay client"));
        let connections = Arc::new(AtomicU64::new(0));
        let streams = Arc::new(Streams::default());
        let (counted, all_streams) = (connections.clone(), streams.clone());
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::Relaxed);
                let (acceptor, client, upstream, streams) = (
                    acceptor.clone(),
                    client.clone(),
                    upstream.clone(),
                    all_streams.clone(),
                );
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let on_connection = Arc::new(AtomicUsize::new(0));
                    let service = hyper::service::service_fn(move |request| {
                        let open = Open::new(&streams, &on_connection);
                        relay(request, client.clone(), upstream.clone(), open)
                    });
                    let mut builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    builder.http2().max_concurrent_streams(max_streams);
                    // A client that hangs up mid-answer is not our error.
                    let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        TlsFront {
            addr,
            ca_file,
            connections,
            streams,
            accept,
        }
    }

    /// The root URL, `https://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The PEM file of the CA that signed the front's certificate: what
    /// `SSL_CERT_FILE` should name for a client to trust it.
    pub fn ca_file(&self) -> &Path {
        self.ca_file.path()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Requests being answered now.
    pub fn in_flight(&self) -> usize {
        self.streams.now.load(Ordering::Acquire)
    }

    /// The most requests ever answered at once on a single connection.
    pub fn peak_streams_per_connection(&self) -> usize {
        self.streams.peak_per_connection.load(Ordering::Acquire)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A CA's PEM, and a leaf certificate chain and key for 127.0.0.1 and
/// `localhost` signed by it.
fn certificates() -> (
    String,
    Vec<rustls::pki_types::CertificateDer<'static>>,
    PrivateKeyDer<'static>,
) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "fake-poe throwaway CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key")).expect("CA");

    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).expect("leaf params");
    leaf.subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_key = KeyPair::generate().expect("leaf key");
    let cert = leaf.signed_by(&leaf_key, &ca).expect("leaf certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    (ca.pem(), vec![cert.der().clone(), ca.der().clone()], key)
}

/// Sends `request` on to the stand-in and streams its answer back.
async fn relay(
    request: Request<Incoming>,
    lanes: Arc<Lanes<reqwest::Client>>,
    upstream: String,
    open: Open,
) -> Result<Response<Body>, std::convert::Infallible> {
    // Both held until the answer is relayed whole.
    let client = lanes.take();
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
    };
    let mut headers = parts.headers;
    // HTTP/2 carries the authority in the URI; the stand-in gets its own.
    headers.remove(hyper::header::HOST);
    let sent = client
        .request(parts.method, format!("{upstream}{path}"))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let Ok(answer) = sent else {
        return Ok(status(StatusCode::BAD_GATEWAY));
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        // Connection-level headers are not allowed in HTTP/2.
        if !matches!(
            name.as_str(),
            "connection" | "transfer-encoding" | "keep-alive" | "content-length"
        ) {
            response = response.header(name, value);
        }
    }
    let frames = answer
        .bytes_stream()
        .map_ok(move |bytes| {
            let _held = (&client, &open);
            Frame::data(bytes)
        })
        .map_err(std::io::Error::other);
    Ok(response
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .expect("relayed response"))
}

fn status(code: StatusCode) -> Response<Body> {
    let empty = http_body_util::Empty::<Bytes>::new().map_err(|never| match never {});
    let mut response = Response::new(BodyExt::boxed(empty));
    *response.status_mut() = code;
    response
}
