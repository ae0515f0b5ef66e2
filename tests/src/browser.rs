//! A headless Chromium for the browser tests, driven over WebDriver: each [`Browser`] starts
//! its own `chromedriver` on a free port and a Chromium with a fresh profile, and stops both
//! when dropped. Chromium and chromedriver are Debian's (`chromium`, `chromium-driver`; the test
//! script installs them); `CHROMIUM` and `CHROMEDRIVER` point elsewhere.
//!
//! The flags keep Chromium off the network (this machine has none, and without them it waits
//! on connections) and out of the sandbox (tests run as root in a container).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::{eventually, throwaway::free_port};

const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

fn program(variable: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(variable).map(PathBuf::from).unwrap_or_else(|| default.into());
    assert!(
        path.exists(),
        "{} not found (set {variable} to use another): the browser tests need Debian's chromium \
         and chromium-driver packages; deploy/scripts/test installs them \
         (apt-get install chromium chromium-driver)",
        path.display()
    );
    path
}

/// A Chromium under WebDriver control.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver and a Chromium whose window is `width` × `height` CSS pixels.
    pub async fn start(width: u32, height: u32) -> Self {
        let chromium = program("CHROMIUM", "/usr/bin/chromium");
        let chromedriver = program("CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = free_port();
        let driver = {
            use std::os::unix::process::CommandExt;
            Command::new(&chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own process group, so that dropping the browser ends Chromium too.
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()))
        };
        let status_url = format!("http://127.0.0.1:{port}/status");
        let http = reqwest::Client::new();
        eventually(Duration::from_secs(20), || async {
            let response = http.get(&status_url).send().await.ok()?;
            let body: Value = response.json().await.ok()?;
            body["value"]["ready"].as_bool().filter(|ready| *ready)
        })
        .await;
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={width},{height}"));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        });
        let Value::Object(capabilities) = capabilities else { unreachable!() };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session with headless Chromium");
        let me = Self { client, driver, _profile: profile };
        // The window size flag sets the outer window; make the viewport the size asked for.
        me.client.set_window_size(width, height).await.expect("window size");
        me
    }

    /// Waits up to `within` for an element matching `css`.
    pub async fn wait_for(&self, css: &str, within: Duration) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(within)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css} within {within:?}: {e}"))
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    /// Replaces the value of the input `css` by typing `text`, as a person would.
    pub async fn type_into(&self, css: &str, text: &str) {
        let input = self.find(css).await;
        input.clear().await.expect("clear");
        input.send_keys(text).await.expect("type");
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Keeps `key` as the page's API key (in the tab's sessionStorage, where the page keeps the
    /// key a person typed), for tests that are not about the prompt. Call it on the page.
    pub async fn use_key(&self, key: &str) {
        self.eval(
            "sessionStorage.setItem('portfolio-mc.api-key', arguments[0])",
            vec![Value::String(key.to_owned())],
        )
        .await;
    }

    /// Answers the page's API key prompt with `key`, once it shows.
    pub async fn answer_key_prompt(&self, key: &str, within: Duration) {
        self.wait_for("#api-key", within).await;
        self.type_into("#api-key", key).await;
        self.click("#api-key-submit").await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    /// Saves a PNG of the viewport as `test-artifacts/<name>.png` at the workspace root and
    /// returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).expect("test-artifacts directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }

    /// Ends the session (Chromium exits) and chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// Where tests leave files for people to look at (gitignored).
pub(crate) fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("test-artifacts")
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium it started, even if the session was
        // never closed (a failed assertion).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.wait();
    }
}
