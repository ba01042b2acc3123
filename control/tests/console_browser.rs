//! The web console in a real browser: headless Chromium (Debian's `chromium`, driven through
//! `chromedriver`) logs in, creates a stream and a topic, sends a message and browses it (JSON
//! view, headers), then opens the overview and sees the throughput chart move while a producer
//! runs over TCP. One browser session. Screenshots are left in `target/console-screenshots/`.

mod common;

use common::webdriver::{self, Browser};
use common::Appliance;
use iggy::prelude::*;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The producer's batches: 100 messages of 1 KB, as often as the appliance takes them.
const PRODUCER_BATCH_MESSAGES: usize = 100;
const PRODUCER_MESSAGE_BYTES: usize = 1024;

#[test]
fn the_console_logs_in_creates_sends_browses_and_charts_a_producer() {
    if !common::require(
        webdriver::available(),
        "chromium and chromium-driver are not installed (scripts/install-deps.sh)",
    ) {
        return;
    }
    let Some(appliance) = Appliance::start() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(scenario(&appliance));
}

async fn scenario(appliance: &Appliance) {
    let shots = webdriver::screenshot_dir();
    let ui = format!("{}/ui", appliance.http_url());
    let browser = Browser::start().await;

    browser.goto(&ui).await;
    browser
        .wait_for(
            "the login form",
            "return !!document.getElementById('login-username')",
        )
        .await;
    browser.screenshot(&shots.join("login.png")).await;
    browser.type_into("#login-username", "iggy").await;
    browser.type_into("#login-password", "iggy").await;
    browser.click("#login-submit").await;
    browser
        .wait_for(
            "the overview's cards",
            "return document.querySelectorAll('#cards .card').length",
        )
        .await;

    // A stream, then a topic in it.
    browser.click("#nav-streams").await;
    browser
        .wait_for(
            "the stream form",
            "return !!document.getElementById('stream-name')",
        )
        .await;
    browser.type_into("#stream-name", "web").await;
    browser.click("#stream-create").await;
    browser
        .wait_for(
            "the new stream in the table",
            "return [...document.querySelectorAll('#app td a')].find(a => a.textContent === 'web')",
        )
        .await;
    browser.screenshot(&shots.join("streams.png")).await;
    browser
        .script(
            "[...document.querySelectorAll('#app td a')].find(a => a.textContent === 'web').click()",
            Vec::new(),
        )
        .await;
    browser
        .wait_for(
            "the topic form",
            "return !!document.getElementById('topic-name')",
        )
        .await;
    browser.type_into("#topic-name", "clicks").await;
    browser.type_into("#topic-partitions", "2").await;
    browser.click("#topic-create").await;
    browser
        .wait_for(
            "the new topic",
            "return [...document.querySelectorAll('#app td a')].find(a => a.textContent === 'clicks')",
        )
        .await;

    send_and_browse(&browser, &shots).await;
    overview_moves_with_a_producer(&browser, appliance, &shots).await;
    browser.quit().await;
}

async fn send_and_browse(browser: &Browser, shots: &std::path::Path) {
    browser
        .script(
            "[...document.querySelectorAll('#app td a')].find(a => a.textContent === 'clicks').click()",
            Vec::new(),
        )
        .await;
    browser
        .wait_for(
            "the topic page's tabs",
            "return !!document.querySelector('.tabs')",
        )
        .await;
    browser
        .script(
            "[...document.querySelectorAll('.tabs a')].find(a => a.textContent === 'Messages').click()",
            Vec::new(),
        )
        .await;
    browser
        .wait_for(
            "the send form",
            "return !!document.getElementById('send-payload')",
        )
        .await;
    browser
        .type_into("#send-payload", r#"{"hello":"browser","n":1}"#)
        .await;
    browser.type_into("#send-headers", "source=webdriver").await;
    browser.click("#send").await;
    browser
        .wait_for(
            "the sent message in the browser",
            "return document.getElementById('poll-result').textContent.includes('hello')",
        )
        .await;
    // Shown as JSON, with its header.
    browser
        .script(
            "const f = document.getElementById('poll-format'); f.value = 'json'; f.dispatchEvent(new Event('change'));",
            Vec::new(),
        )
        .await;
    let shown = browser
        .wait_for(
            "the payload as indented JSON",
            "const p = document.querySelector('#poll-result pre.payload'); return p && p.textContent.includes('\"hello\": \"browser\"') && p.textContent",
        )
        .await;
    assert!(shown.as_str().unwrap().contains("\"n\": 1"), "{shown}");
    let header = browser
        .script(
            "return document.querySelector('#poll-result .tag').textContent",
            Vec::new(),
        )
        .await;
    assert_eq!(header, "source = webdriver");
    browser
        .script(
            "const f = document.getElementById('poll-format'); f.value = 'hex'; f.dispatchEvent(new Event('change'));",
            Vec::new(),
        )
        .await;
    browser
        .wait_for(
            "the payload as hex",
            "return document.querySelector('#poll-result pre.payload').textContent.startsWith('000000  7b 22 68')",
        )
        .await;
    browser.screenshot(&shots.join("messages.png")).await;
}

/// Sends batches over TCP (the official SDK) until told to stop.
async fn produce(address: String, stop: Arc<AtomicBool>) -> u64 {
    let client =
        IggyClient::from_connection_string(&format!("iggy://iggy:iggy@{address}")).expect("client");
    client.connect().await.expect("producer connects");
    let (stream, topic) = (
        Identifier::named("web").unwrap(),
        Identifier::named("clicks").unwrap(),
    );
    let payload = vec![b'x'; PRODUCER_MESSAGE_BYTES];
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut batch: Vec<IggyMessage> = (0..PRODUCER_BATCH_MESSAGES)
            .map(|_| {
                IggyMessage::builder()
                    .payload(payload.clone().into())
                    .build()
                    .unwrap()
            })
            .collect();
        client
            .send_messages(&stream, &topic, &Partitioning::balanced(), &mut batch)
            .await
            .expect("producer send");
        sent += batch.len() as u64;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sent
}

async fn overview_moves_with_a_producer(
    browser: &Browser,
    appliance: &Appliance,
    shots: &std::path::Path,
) {
    browser.click("#nav-overview").await;
    browser
        .wait_for(
            "the throughput chart",
            "return document.getElementById('chart-throughput').dataset.points",
        )
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let producer = tokio::spawn(produce(appliance.tcp_address(), stop.clone()));
    // The chart gains points and shows the producer's bytes coming in.
    let before = points(browser).await;
    let last = browser
        .wait_for(
            "the producer's MB/s on the throughput chart",
            "const c = document.getElementById('chart-throughput'); const last = JSON.parse(c.dataset.last || '[]'); return last[0] > 0.01 && c.dataset.last",
        )
        .await;
    let inbound: Vec<Value> = serde_json::from_str(last.as_str().unwrap()).unwrap();
    assert!(inbound[0].as_f64().unwrap() > 0.01, "{last}");
    browser
        .wait_for(
            "an append p99 while durable sends run",
            "return JSON.parse(document.getElementById('chart-p99').dataset.last || '[null]')[0]",
        )
        .await;
    let after = points(browser).await;
    assert!(
        after > before || after == 300,
        "the chart moved: {before} -> {after} points"
    );
    // A few more seconds of the producer, for a chart worth looking at.
    browser
        .wait_for(
            "three samples with the producer's bytes",
            "return Number(document.getElementById('chart-throughput').dataset.active) >= 3",
        )
        .await;
    browser.screenshot(&shots.join("overview.png")).await;
    stop.store(true, Ordering::Relaxed);
    let sent = producer.await.expect("producer");
    assert!(sent > 0);
    let cards = browser
        .script(
            "return document.getElementById('cards').textContent",
            Vec::new(),
        )
        .await;
    let text = cards.as_str().unwrap();
    assert!(
        text.contains("kernel") && text.contains("running"),
        "{text}"
    );
}

async fn points(browser: &Browser) -> u64 {
    browser
        .script(
            "return Number(document.getElementById('chart-throughput').dataset.points)",
            Vec::new(),
        )
        .await
        .as_u64()
        .unwrap_or(0)
}
