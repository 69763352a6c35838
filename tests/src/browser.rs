//! A real headless browser for the tests: Debian's Chromium driven through its ChromeDriver
//! (WebDriver, with the `fantoccini` crate). `scripts/browser-deps.sh` installs both.
//!
//! One ChromeDriver serves a whole test binary: it starts with the first [`Browser`] and stops
//! when the test process ends (it runs under a shell that waits on a pipe from this process;
//! when the process exits, however it exits, the pipe closes and the shell stops the driver).
//! Each [`Browser`] is its own Chromium session, ended when it is dropped, even by a panic.
//!
//! Environment: `CHROMEDRIVER` and `CHROMIUM` (defaults `/usr/bin/chromedriver` and
//! `/usr/bin/chromium`); screenshots go to `<target>/test-output/screenshots/`.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// Desktop and phone viewports of the screenshots (CSS pixels).
pub const DESKTOP: (u32, u32) = (1280, 900);
pub const PHONE: (u32, u32) = (390, 844);

struct Driver {
    addr: SocketAddr,
    // Held for the life of the process: closing it stops the driver (see the module docs).
    _keepalive: Mutex<ChildStdin>,
    _child: Child,
}

static DRIVER: OnceLock<Result<Driver, String>> = OnceLock::new();

fn driver() -> anyhow::Result<&'static Driver> {
    DRIVER
        .get_or_init(|| start_driver().map_err(|error| format!("{error:#}")))
        .as_ref()
        .map_err(|error| anyhow::anyhow!("{error}"))
}

fn start_driver() -> anyhow::Result<Driver> {
    let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    if !std::path::Path::new(&binary).exists() {
        bail!("{binary} is missing: run scripts/browser-deps.sh (installs chromium and chromium-driver)");
    }
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" --port="$1" --log-level=WARNING >/dev/null 2>&1 & pid=$!; cat >/dev/null; kill "$pid""#)
        .arg(&binary)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {binary}"))?;
    let keepalive = child.stdin.take().context("the driver's pipe")?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !driver_ready(addr) {
        if Instant::now() > deadline {
            bail!("{binary} did not become ready on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Driver {
        addr,
        _keepalive: Mutex::new(keepalive),
        _child: child,
    })
}

fn driver_ready(addr: SocketAddr) -> bool {
    http_blocking(addr, "GET", "/status").is_ok_and(|body| body.contains("\"ready\":true"))
}

/// A bare HTTP/1.1 request, for the places that cannot be async (startup, `Drop`). The
/// driver keeps connections open whatever the request says, so the body is read by its
/// `Content-Length`.
fn http_blocking(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut response = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&response);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if response.len() >= end + 4 + length {
                break;
            }
        }
    }
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// One Chromium session.
pub struct Browser {
    client: Client,
    session: String,
    driver: SocketAddr,
}

impl Browser {
    /// A new headless Chromium at the desktop size, in US English (so numbers and dates are
    /// formatted the same on every machine).
    pub async fn start() -> anyhow::Result<Self> {
        let driver = driver()?;
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-extensions", "--no-first-run", "--hide-scrollbars", "--lang=en-US",
                    "--force-color-profile=srgb", "--disable-background-networking",
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://{}", driver.addr))
            .await
            .context("starting a Chromium session")?;
        let session = client.session_id().await?.context("no session id")?;
        Ok(Self {
            client,
            session,
            driver: driver.addr,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        Ok(self.client.goto(url).await?)
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its result.
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        Ok(self.client.execute(script, args).await?)
    }

    /// Evaluates `script` until it returns something other than null, false or undefined;
    /// returns that value, or fails after `timeout` with the last value.
    pub async fn wait_for(&self, script: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(script, vec![]).await?;
            if !(value.is_null() || value == Value::Bool(false)) {
                return Ok(value);
            }
            if Instant::now() > deadline {
                bail!("waited {timeout:?} for: {script}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The element `css` inside the shadow root of the first `host` element.
    pub async fn in_shadow(&self, host: &str, css: &str) -> anyhow::Result<Element> {
        let host = self.client.find(Locator::Css(host)).await?;
        let root = host.shadow_root().await?;
        Ok(root.find(Locator::Css(css)).await?)
    }

    /// Presses and releases `key` on whatever has the focus, as a keyboard would.
    pub async fn press(&self, key: fantoccini::key::Key) -> anyhow::Result<()> {
        use fantoccini::actions::{InputSource as _, KeyAction, KeyActions};
        let value = char::from(key);
        let actions = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value })
            .then(KeyAction::Up { value });
        Ok(self.client.perform_actions(actions).await?)
    }

    /// Resizes the window to `size` (CSS pixels).
    pub async fn resize(&self, (width, height): (u32, u32)) -> anyhow::Result<()> {
        Ok(self.client.set_window_size(width, height).await?)
    }

    /// A screenshot of the top of the page in a window of `size`, written to
    /// `screenshots/<name>.png`; returns the path. The window keeps that size afterwards.
    pub async fn screenshot(&self, name: &str, size: (u32, u32)) -> anyhow::Result<PathBuf> {
        self.resize(size).await?;
        self.eval("window.scrollTo(0, 0); document.activeElement?.blur();", vec![])
            .await?;
        // Let layout and charts settle at the new width before the capture.
        self.client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done, 350)));",
                vec![],
            )
            .await?;
        let png = self.client.screenshot().await?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the Chromium process even when the test panicked.
        let _ = http_blocking(self.driver, "DELETE", &format!("/session/{}", self.session));
    }
}

/// `<target>/test-output/screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("test-output").join("screenshots")
}
