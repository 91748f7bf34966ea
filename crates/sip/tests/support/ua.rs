//! A small SIP user agent over UDP or WebSocket (the way JsSIP talks:
//! `.invalid` Via host, Contact with `transport=ws`, `reg-id` and
//! `+sip.instance`).

use futures_util::{SinkExt, StreamExt};
use sip::core::digest::{self, Algorithm};
use sip::core::msg::{Limits, Msg};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub enum Link {
    Udp(UdpSocket, SocketAddr),
    Ws(Box<WebSocketStream<MaybeTlsStream<TcpStream>>>),
    /// TLS, opened by the UA or accepted from the server; the port is
    /// where this UA listens for connections (its Contact).
    Tls(Box<dyn Stream>, Vec<u8>, u16),
    /// Plain TCP; the port is where this UA listens for connections (its Contact).
    Tcp(TcpStream, Vec<u8>, u16),
}

/// A byte stream a UA talks over (TLS client or server side).
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

pub struct Ua {
    pub link: Link,
    pub user: String,
    pub pass: String,
    pub realm: String,
    pub server: SocketAddr,
    pub nc: u32,
    pub cseq: u32,
    counter: u32,
}

impl Ua {
    pub async fn udp(server: SocketAddr, user: &str, pass: &str, realm: &str) -> Ua {
        let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
        Ua::new(Link::Udp(s, server), server, user, pass, realm)
    }

    pub async fn ws(ws: SocketAddr, server: SocketAddr, user: &str, pass: &str, realm: &str) -> Ua {
        let mut req = format!("ws://{ws}/ws")
            .into_client_request()
            .expect("ws request");
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
        let (s, resp) = tokio_tungstenite::connect_async(req)
            .await
            .expect("WS connect");
        assert_eq!(
            resp.headers()
                .get("Sec-WebSocket-Protocol")
                .and_then(|v| v.to_str().ok()),
            Some("sip")
        );
        Ua::new(Link::Ws(Box::new(s)), server, user, pass, realm)
    }

    /// SIP over TLS, trusting only `ca_pem` (the server's self-signed certificate).
    pub async fn tls(
        tls: SocketAddr,
        server: SocketAddr,
        ca_pem: &std::path::Path,
        user: &str,
        pass: &str,
        realm: &str,
    ) -> Ua {
        Ua::tls_listening(tls, server, ca_pem, 5999, user, pass, realm).await
    }

    /// [`Ua::tls`] whose Contact names `listen_port`, where the UA accepts
    /// TLS connections.
    pub async fn tls_listening(
        tls: SocketAddr,
        server: SocketAddr,
        ca_pem: &std::path::Path,
        listen_port: u16,
        user: &str,
        pass: &str,
        realm: &str,
    ) -> Ua {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_file_iter(ca_pem).expect("read cert") {
            roots
                .add(c.expect("PEM certificate"))
                .expect("trust certificate");
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let conn = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg));
        let tcp = TcpStream::connect(tls).await.expect("TCP connect");
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("server name");
        let s = conn.connect(name, tcp).await.expect("TLS handshake");
        Ua::tls_stream(s, listen_port, server, user, pass, realm)
    }

    /// SIP over an established TLS stream (e.g. one the server opened to
    /// the UA); the Contact names `listen_port`.
    pub fn tls_stream(
        stream: impl Stream + 'static,
        listen_port: u16,
        server: SocketAddr,
        user: &str,
        pass: &str,
        realm: &str,
    ) -> Ua {
        Ua::new(
            Link::Tls(Box::new(stream), Vec::new(), listen_port),
            server,
            user,
            pass,
            realm,
        )
    }

    /// SIP over TCP on `stream` (connected to the server, or accepted from
    /// it); the Contact names `listen_port`, where the UA accepts connections.
    pub fn tcp(
        stream: TcpStream,
        listen_port: u16,
        server: SocketAddr,
        user: &str,
        pass: &str,
        realm: &str,
    ) -> Ua {
        Ua::new(
            Link::Tcp(stream, Vec::new(), listen_port),
            server,
            user,
            pass,
            realm,
        )
    }

    fn new(link: Link, server: SocketAddr, user: &str, pass: &str, realm: &str) -> Ua {
        Ua {
            link,
            user: user.into(),
            pass: pass.into(),
            realm: realm.into(),
            server,
            nc: 0,
            cseq: 0,
            counter: 0,
        }
    }

    pub fn is_ws(&self) -> bool {
        matches!(self.link, Link::Ws(_))
    }

    pub fn via(&mut self) -> String {
        self.counter += 1;
        match &self.link {
            Link::Udp(s, _) => format!(
                "SIP/2.0/UDP {};branch=z9hG4bK{}x{};rport",
                s.local_addr().expect("local address"),
                self.user,
                self.counter
            ),
            Link::Ws(_) => format!(
                "SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK{}x{}",
                self.user, self.counter
            ),
            Link::Tls(_, _, port) => format!(
                "SIP/2.0/TLS 127.0.0.1:{port};branch=z9hG4bK{}x{}",
                self.user, self.counter
            ),
            Link::Tcp(_, _, port) => format!(
                "SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bK{}x{}",
                self.user, self.counter
            ),
        }
    }

    pub fn contact(&self) -> String {
        match &self.link {
            Link::Udp(s, _) => format!("<sip:{}@{}>", self.user, s.local_addr().expect("local address")),
            Link::Ws(_) => format!(
                "<sip:{}@df7jal23ls0d.invalid;transport=ws>;reg-id=1;+sip.instance=\"<urn:uuid:0b6d3f8a-{}>\"",
                self.user, self.user
            ),
            Link::Tls(_, _, port) => format!("<sip:{}@127.0.0.1:{port};transport=tls>", self.user),
            Link::Tcp(_, _, port) => format!("<sip:{}@127.0.0.1:{port};transport=tcp>", self.user),
        }
    }

    pub async fn send(&mut self, text: &str) {
        match &mut self.link {
            Link::Udp(s, to) => {
                s.send_to(text.as_bytes(), *to).await.expect("UDP send");
            }
            Link::Ws(ws) => ws
                .send(Message::text(text.to_string()))
                .await
                .expect("WS send"),
            Link::Tls(s, _, _) => {
                use tokio::io::AsyncWriteExt;
                s.write_all(text.as_bytes()).await.expect("TLS send");
            }
            Link::Tcp(s, _, _) => {
                use tokio::io::AsyncWriteExt;
                s.write_all(text.as_bytes()).await.expect("TCP send");
            }
        }
    }

    /// Next message, or None after `ms` milliseconds.
    pub async fn recv(&mut self, ms: u64) -> Option<Msg> {
        let fut = async {
            match &mut self.link {
                Link::Udp(s, _) => {
                    let mut buf = vec![0u8; 65_535];
                    let (n, _) = s.recv_from(&mut buf).await.ok()?;
                    buf.truncate(n);
                    Some(buf)
                }
                Link::Tls(s, buf, _) => loop {
                    use tokio::io::AsyncReadExt;
                    if let Ok(Some(n)) = sip::core::msg::stream_frame_len(buf, 65_535) {
                        break Some(buf.drain(..n).collect());
                    }
                    let mut chunk = [0u8; 4096];
                    let n = s.read(&mut chunk).await.ok()?;
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                },
                Link::Tcp(s, buf, _) => loop {
                    use tokio::io::AsyncReadExt;
                    if let Ok(Some(n)) = sip::core::msg::stream_frame_len(buf, 65_535) {
                        break Some(buf.drain(..n).collect());
                    }
                    let mut chunk = [0u8; 4096];
                    let n = s.read(&mut chunk).await.ok()?;
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                },
                Link::Ws(ws) => loop {
                    match ws.next().await? {
                        Ok(Message::Text(t)) => break Some(t.as_bytes().to_vec()),
                        Ok(Message::Binary(b)) => break Some(b.to_vec()),
                        Ok(_) => continue,
                        Err(_) => break None,
                    }
                },
            }
        };
        let data = tokio::time::timeout(Duration::from_millis(ms), fut)
            .await
            .ok()??;
        Some(Msg::parse(&data, &Limits::default()).expect("server sends valid SIP"))
    }

    /// Waits for a response with `code` (skipping provisional ones).
    pub async fn expect_code(&mut self, code: u16) -> Msg {
        for _ in 0..20 {
            let m = self.recv(10_000).await.expect("a response");
            if m.code() == Some(code) {
                return m;
            }
            assert!(
                m.code().is_some_and(|c| c < 200),
                "expected {code}, got {:?}",
                m.start
            );
        }
        panic!("no {code}");
    }

    pub async fn expect_request(&mut self, method: &str) -> Msg {
        for _ in 0..20 {
            let m = self.recv(10_000).await.expect("a request");
            if m.method() == Some(method) {
                return m;
            }
        }
        panic!("no {method}");
    }

    /// The Authorization value answering `challenge` with the given algorithm.
    pub fn answer(&mut self, challenge: &Msg, alg: Algorithm, method: &str, uri: &str) -> String {
        let hname = if challenge.code() == Some(401) {
            "WWW-Authenticate"
        } else {
            "Proxy-Authenticate"
        };
        // The challenge for `alg` if offered, else any: the server's nonces
        // are not tied to an algorithm, and by default it offers only MD5.
        let offered: Vec<String> = challenge
            .headers
            .iter()
            .filter(|(n, _)| n == hname)
            .map(|(_, v)| v.clone())
            .collect();
        let c = offered
            .iter()
            .find(|v| v.contains(&format!("algorithm={},", alg.name())))
            .or(offered.first())
            .expect("a challenge")
            .clone();
        let nonce = c
            .split("nonce=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("nonce")
            .to_string();
        self.nc += 1;
        let mut cr = digest::Credentials {
            username: self.user.clone(),
            realm: self.realm.clone(),
            nonce: nonce.clone(),
            uri: uri.into(),
            response: String::new(),
            algorithm: alg.name().into(),
            cnonce: "0a4f113b".into(),
            qop: "auth".into(),
            nc: format!("{:08x}", self.nc),
        };
        let ha1 = digest::ha1(alg, &self.user, &self.realm, &self.pass);
        cr.response = digest::expected_response(alg, &ha1, method, &cr);
        format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{}\", algorithm={}, qop=auth, nc={}, cnonce=\"0a4f113b\"",
            self.user,
            self.realm,
            cr.response,
            alg.name(),
            cr.nc
        )
    }

    pub fn register_text(&mut self, expires: u32, auth: Option<&str>) -> String {
        self.cseq += 1;
        let via = self.via();
        let mut s = format!(
            "REGISTER sip:{realm} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:{u}@{realm}>;tag=rt{u}\r\nTo: <sip:{u}@{realm}>\r\nCall-ID: reg-{u}-call\r\nCSeq: {c} REGISTER\r\nContact: {contact};expires={expires}\r\nUser-Agent: rust-ua\r\n",
            realm = self.realm,
            u = self.user,
            c = self.cseq,
            contact = self.contact()
        );
        if let Some(a) = auth {
            s.push_str(&format!("Authorization: {a}\r\n"));
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        s
    }

    /// REGISTER, answer the 401 with `alg`; returns the final response.
    pub async fn register(&mut self, alg: Algorithm) -> Msg {
        let r = self.register_text(300, None);
        self.send(&r).await;
        let ch = self.expect_code(401).await;
        let uri = format!("sip:{}", self.realm);
        let a = self.answer(&ch, alg, "REGISTER", &uri);
        let r = self.register_text(300, Some(&a));
        self.send(&r).await;
        self.recv(5_000).await.expect("REGISTER answer")
    }

    /// Calls extension `ext`: INVITE with an SDP offer, answers the 407 and
    /// sends the INVITE again with credentials. Responses are left to the caller.
    pub async fn invite(&mut self, ext: &str, call_id: &str) {
        let target = format!("sip:{ext}@{}", self.realm);
        let text = |ua: &mut Ua, cseq: u32, auth: Option<&str>| {
            let via = ua.via();
            let mut s = format!(
                "INVITE {target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:{u}@{r}>;tag=inv{u}\r\nTo: <{target}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContact: {c}\r\nContent-Type: application/sdp\r\n",
                u = ua.user,
                r = ua.realm,
                c = ua.contact()
            );
            if let Some(x) = auth {
                s.push_str(&format!("Proxy-Authorization: {x}\r\n"));
            }
            s.push_str(&format!("Content-Length: {}\r\n\r\n{SDP}", SDP.len()));
            s
        };
        self.cseq += 1;
        let first = text(self, self.cseq, None);
        self.send(&first).await;
        let ch = self.expect_code(407).await;
        let auth = self.answer(&ch, Algorithm::Md5, "INVITE", &target);
        self.cseq += 1;
        let second = text(self, self.cseq, Some(&auth));
        self.send(&second).await;
    }

    /// ACK for the 2xx `ok` to our INVITE.
    pub async fn ack(&mut self, ok: &Msg) {
        let via = self.via();
        let contact =
            sip::core::msg::addr_uri(ok.header_list("Contact").first().copied().unwrap_or(""))
                .to_string();
        let text = format!(
            "ACK {contact} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} ACK\r\nContent-Length: 0\r\n\r\n",
            ok.header("From").unwrap_or(""),
            ok.header("To").unwrap_or(""),
            ok.call_id(),
            ok.cseq().0
        );
        self.send(&text).await;
    }

    /// Sends a response to `req` (copying Via/From/To/Call-ID/CSeq).
    pub async fn respond(
        &mut self,
        req: &Msg,
        code: u16,
        reason: &str,
        tag: &str,
        sdp: Option<&str>,
    ) {
        let mut s = format!("SIP/2.0 {code} {reason}\r\n");
        for (n, v) in &req.headers {
            match n.as_str() {
                "Via" | "From" | "Call-ID" | "CSeq" => s.push_str(&format!("{n}: {v}\r\n")),
                "To" => {
                    if v.contains("tag=") {
                        s.push_str(&format!("To: {v}\r\n"));
                    } else {
                        s.push_str(&format!("To: {v};tag={tag}\r\n"));
                    }
                }
                _ => {}
            }
        }
        s.push_str(&format!("Contact: {}\r\n", self.contact()));
        match sdp {
            Some(b) => s.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )),
            None => s.push_str("Content-Length: 0\r\n\r\n"),
        }
        self.send(&s).await;
    }
}

pub const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
