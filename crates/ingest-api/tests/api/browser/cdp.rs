//! Just enough of the Chrome DevTools Protocol to use the dashboard as a person would:
//! headless Debian `chromium` started with `--remote-debugging-port=0`, one page driven
//! over its WebSocket. Clicks are real mouse events at the element's centre
//! (`Input.dispatchMouseEvent`), typing is `Input.insertText` into the focused field, so
//! the page's own event handlers run exactly as they do for a user.

use std::{path::Path, process::Stdio, time::Duration};

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpStream,
    process::Child,
};
use tokio_tungstenite::{tungstenite::Message, MaybeTlsStream, WebSocketStream};

pub const CHROMIUM: &str = "chromium";

/// How long one protocol call or one wait may take before the test fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A headless Chromium and the WebSocket of its one page. Dropping it kills the browser.
pub struct Browser {
    child: Child,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium with the flags this machine needs (no sandbox as root, no
    /// background networking: the network is closed) and a fresh profile, sized
    /// `width` x `height`, and attaches to its first page.
    pub async fn launch(width: u32, height: u32) -> Self {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = tokio::process::Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{CHROMIUM}` ({e}); the dashboard test needs Debian's chromium package: run `make setup` (or `apt-get install -y chromium`)"
                )
            });

        // Chromium prints "DevTools listening on ws://127.0.0.1:<port>/devtools/browser/<id>".
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let port = tokio::time::timeout(CALL_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.expect("reading chromium's stderr") {
                if let Some(rest) = line.split("DevTools listening on ws://127.0.0.1:").nth(1) {
                    return rest.split('/').next().and_then(|p| p.parse::<u16>().ok());
                }
                seen.push(line);
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "chromium did not open its DevTools port:\n{}",
                seen.join("\n")
            )
        });
        // Keep draining stderr so Chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let targets: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .expect("DevTools target list")
            .json()
            .await
            .expect("target list as JSON");
        let page_ws = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap_or_else(|| panic!("no page target in {targets}"))
            .to_owned();
        let (ws, _) = tokio_tungstenite::connect_async(page_ws.as_str())
            .await
            .expect("connecting to the page's DevTools socket");
        let mut browser = Self {
            child,
            ws,
            next_id: 0,
            profile,
        };
        browser.call("Page.enable", json!({})).await;
        browser.call("Runtime.enable", json!({})).await;
        browser
    }

    /// Sends one command and returns its `result`, skipping the events in between.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws
            .send(Message::text(request))
            .await
            .unwrap_or_else(|e| panic!("sending {method}: {e}"));
        let reply = tokio::time::timeout(CALL_TIMEOUT, async {
            while let Some(msg) = self.ws.next().await {
                let msg =
                    msg.unwrap_or_else(|e| panic!("DevTools socket failed during {method}: {e}"));
                let Message::Text(text) = msg else { continue };
                let value: Value = serde_json::from_str(&text).expect("DevTools message is JSON");
                if value["id"] == id {
                    return Some(value);
                }
            }
            None
        })
        .await
        .unwrap_or_else(|_| panic!("{method} got no answer within {CALL_TIMEOUT:?}"))
        .unwrap_or_else(|| panic!("DevTools socket closed during {method}"));
        assert!(
            reply.get("error").is_none(),
            "{method} failed: {}",
            reply["error"]
        );
        reply["result"].clone()
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("`{expression}` threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Navigates and waits for the load event.
    pub async fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for("document.readyState === 'complete'", "the page loads")
            .await;
    }

    /// Polls `condition` (a JS expression) until it is truthy; `what` names it in the
    /// failure message, which also shows the page's text.
    pub async fn wait_for(&mut self, condition: &str, what: &str) {
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        loop {
            let ok = self.eval(&format!("!!({condition})")).await;
            if ok == true {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let text = self
                    .eval("document.body ? document.body.innerText : ''")
                    .await;
                panic!(
                    "waited {CALL_TIMEOUT:?} for {what} (`{condition}`); the page shows:\n{}",
                    text.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The page's current DOM as HTML.
    pub async fn html(&mut self) -> String {
        self.eval("document.documentElement.outerHTML")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The visible text of the first element matching `selector`.
    pub async fn text(&mut self, selector: &str) -> String {
        let js = format!(
            "(() => {{ const e = document.querySelector({}); return e ? e.innerText : null; }})()",
            json!(selector)
        );
        self.eval(&js)
            .await
            .as_str()
            .unwrap_or_else(|| panic!("nothing matches {selector}"))
            .to_owned()
    }

    /// Clicks the centre of the element matching `selector` with the mouse, after
    /// scrolling it into view; fails if it is missing or covered by another element.
    pub async fn click(&mut self, selector: &str) {
        let js = format!(
            "(() => {{ const e = document.querySelector({sel});
                if (!e) return null;
                e.scrollIntoView({{block: 'center', inline: 'center'}});
                const r = e.getBoundingClientRect();
                const x = r.left + r.width / 2, y = r.top + r.height / 2;
                const top = document.elementFromPoint(x, y);
                return {{x, y, hit: !!top && (top === e || e.contains(top))}};
            }})()",
            sel = json!(selector)
        );
        let at = self.eval(&js).await;
        assert!(!at.is_null(), "nothing matches {selector} to click");
        assert_eq!(
            at["hit"], true,
            "{selector} is covered by another element at its centre"
        );
        let (x, y) = (
            at["x"].as_f64().unwrap_or(0.0),
            at["y"].as_f64().unwrap_or(0.0),
        );
        self.call(
            "Input.dispatchMouseEvent",
            json!({"type": "mouseMoved", "x": x, "y": y}),
        )
        .await;
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": 1}),
            )
            .await;
        }
    }

    /// Clicks into the field matching `selector` and types `text` into it.
    pub async fn type_into(&mut self, selector: &str, text: &str) {
        self.click(selector).await;
        self.call("Input.insertText", json!({"text": text})).await;
    }

    /// Saves a PNG of the whole page (beyond the window's height) to `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("screenshot is base64");
        std::fs::write(path, png).expect("writing the screenshot");
    }

    /// Closes the browser and removes its profile.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let _ = self.child.kill().await;
        let _ = self.profile.close();
    }
}
