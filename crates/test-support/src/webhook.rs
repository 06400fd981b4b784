//! A tiny real HTTP/1.1 server on `127.0.0.1:0` that receives webhooks in tests: it keeps
//! every request (method, path, headers, body) and answers with scripted status codes
//! (then `200`, or what a [`WebhookSink::respond_by`] function says), one request per
//! connection (`Connection: close`).

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// A request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub status: u16,
    /// When its body had arrived.
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// True when `X-HMAC-Signature` is a valid `t=..,v1=..` signature of the body with
    /// `secret`.
    pub fn signed_with(&self, secret: &str) -> bool {
        match self
            .header("x-hmac-signature")
            .map(common::signing::Signature::parse)
        {
            Some(Ok(sig @ common::signing::Signature::Timestamped { .. })) => {
                sig.verify(secret.as_bytes(), &self.body)
            }
            _ => false,
        }
    }
}

/// Status and body for a request, as [`WebhookSink::respond_by`] decides.
type Responder = Arc<dyn Fn(&Received) -> (u16, String) + Send + Sync>;

#[derive(Default)]
struct State {
    requests: Vec<Received>,
    script: VecDeque<u16>,
    default: Option<u16>,
    responder: Option<Responder>,
}

/// The running receiver; stops when dropped.
pub struct WebhookSink {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl WebhookSink {
    /// Binds `127.0.0.1:0`; answers `200` until told otherwise.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the webhook receiver on 127.0.0.1");
        let addr = listener.local_addr().expect("the receiver's address");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Self { addr, state, task }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests with `statuses`, in order, then with the default.
    pub fn respond_with(&self, statuses: &[u16]) {
        lock(&self.state).script.extend(statuses);
    }

    /// Answers every request not scripted by [`WebhookSink::respond_with`] with `status`.
    pub fn always(&self, status: u16) {
        lock(&self.state).default = Some(status);
    }

    /// Answers every request not scripted by [`WebhookSink::respond_with`] with the status
    /// and body `respond` returns (a receiver that checks what it gets, like an API).
    pub fn respond_by(&self, respond: impl Fn(&Received) -> (u16, String) + Send + Sync + 'static) {
        lock(&self.state).responder = Some(Arc::new(respond));
    }

    pub fn requests(&self) -> Vec<Received> {
        lock(&self.state).requests.clone()
    }

    /// Requests answered with a 2xx.
    pub fn delivered(&self) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    /// Waits until at least `n` requests arrived (whatever the answer); panics after
    /// `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "the webhook receiver got {} request(s) within {timeout:?}, expected {n}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

async fn serve(stream: TcpStream, state: Arc<Mutex<State>>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).await.is_err() {
        return;
    }
    let (status, text) = {
        let mut s = lock(&state);
        let mut received = Received {
            method,
            path,
            headers,
            body,
            status: 200,
            at: Instant::now(),
        };
        let answer = match (s.script.pop_front().or(s.default), &s.responder) {
            (Some(status), _) => (status, None),
            (None, Some(respond)) => {
                let (status, text) = respond(&received);
                (status, Some(text))
            }
            (None, None) => (200, None),
        };
        received.status = answer.0;
        s.requests.push(received);
        answer
    };
    let text = text.unwrap_or_else(|| {
        if (200..300).contains(&status) {
            "ok"
        } else {
            "receiver says no"
        }
        .to_owned()
    });
    let content_type = if text.starts_with('{') {
        "application/json"
    } else {
        "text/plain"
    };
    let response = format!(
        "HTTP/1.1 {status} Test\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = write.write_all(response.as_bytes()).await;
    let _ = write.shutdown().await;
}
