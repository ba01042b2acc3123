//! riptide-http-bench: sends and polls batches through Iggy's HTTP API (the SDK's `HttpClient`
//! against riptide-control) and the same over TCP (the SDK's `IggyClient` against the
//! dataplane), in the same run, and prints MB/s and p99 side by side with the HTTP/TCP ratio.
//!
//! Each phase is `--requests` sequential requests of `--messages` messages of `--message-size`
//! bytes (one request at a time, as the SDK sends), to a topic of its own with one partition;
//! the poll phase reads back what the send phase wrote, `--messages` per request by offset.
//! Repeated `--runs` times, transports alternating; MB/s is the median over the runs with the
//! spread (min-max), p99 is over every request of every run. Payload bytes only (no headers, no
//! base64 or JSON overhead) count towards MB/s. Started by `scripts/bench-http.sh`.

use anyhow::{bail, Context as _};
use clap::Parser;
use iggy::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "riptide-http-bench",
    about = "HTTP API vs TCP: send and poll MB/s and p99"
)]
struct Args {
    /// The HTTP API's base URL.
    #[arg(long)]
    http: String,
    /// The dataplane's Iggy TCP address.
    #[arg(long)]
    tcp: String,
    #[arg(long, default_value = "iggy")]
    username: String,
    #[arg(long, default_value = "iggy")]
    password: String,
    /// Requests per phase and run.
    #[arg(long, default_value_t = 100)]
    requests: u32,
    /// Messages per request.
    #[arg(long, default_value_t = 1000)]
    messages: u32,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 1024)]
    message_size: usize,
    /// Runs (each: send and poll over both transports).
    #[arg(long, default_value_t = 3)]
    runs: u32,
}

/// How long the appliance may take to answer a first login.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Tcp,
    Http,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Http => "http",
        }
    }
}

/// One phase's figures over all runs.
#[derive(Default)]
struct Figures {
    mb_per_s: Vec<f64>,
    latencies_us: Vec<u64>,
}

impl Figures {
    fn median_mb_per_s(&self) -> f64 {
        let mut sorted = self.mb_per_s.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
    }

    fn spread(&self) -> (f64, f64) {
        let min = self.mb_per_s.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.mb_per_s.iter().copied().fold(0.0, f64::max);
        (min, max)
    }

    fn p99_ms(&self) -> f64 {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return 0.0;
        }
        let rank = (sorted.len() * 99).div_ceil(100).max(1);
        sorted[rank - 1] as f64 / 1000.0
    }
}

struct Clients {
    http: HttpClient,
    tcp: IggyClient,
}

impl Clients {
    fn of(&self, transport: Transport) -> &dyn MessageClient {
        match transport {
            Transport::Tcp => &self.tcp,
            Transport::Http => &self.http,
        }
    }
}

async fn connect(args: &Args) -> anyhow::Result<Clients> {
    let http = HttpClient::create(Arc::new(HttpClientConfig {
        api_url: args.http.clone(),
        ..HttpClientConfig::default()
    }))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    while let Err(e) = http.login_user(&args.username, &args.password).await {
        if Instant::now() >= deadline {
            bail!("no HTTP login at {}: {e}", args.http);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let url = format!("iggy://{}:{}@{}", args.username, args.password, args.tcp);
    let tcp = IggyClient::from_connection_string(&url)?;
    tcp.connect().await.context("TCP connect")?;
    Ok(Clients { http, tcp })
}

fn batch(args: &Args, payload: &bytes::Bytes) -> Vec<IggyMessage> {
    (0..args.messages)
        .map(|_| {
            IggyMessage::builder()
                .payload(payload.clone())
                .build()
                .expect("a 1 KB message builds")
        })
        .collect()
}

/// Sends `requests` batches; returns MB/s and adds each request's latency.
async fn send_phase(
    args: &Args,
    client: &dyn MessageClient,
    topic: &Identifier,
    stream: &Identifier,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let payload = bytes::Bytes::from(vec![b'r'; args.message_size]);
    let partitioning = Partitioning::partition_id(0);
    let started = Instant::now();
    for _ in 0..args.requests {
        let mut messages = batch(args, &payload);
        let sent = Instant::now();
        client
            .send_messages(stream, topic, &partitioning, &mut messages)
            .await
            .context("send")?;
        figures.latencies_us.push(sent.elapsed().as_micros() as u64);
    }
    figures.mb_per_s.push(mb_per_s(args, started.elapsed()));
    Ok(())
}

/// Polls back `requests` batches from `first_offset`.
async fn poll_phase(
    args: &Args,
    client: &dyn MessageClient,
    (stream, topic): (&Identifier, &Identifier),
    first_offset: u64,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let consumer = Consumer::new(Identifier::numeric(1)?);
    let started = Instant::now();
    for request in 0..u64::from(args.requests) {
        let offset = first_offset + request * u64::from(args.messages);
        let polled_at = Instant::now();
        let polled = client
            .poll_messages(
                stream,
                topic,
                Some(0),
                &consumer,
                &PollingStrategy::offset(offset),
                args.messages,
                false,
            )
            .await
            .context("poll")?;
        figures
            .latencies_us
            .push(polled_at.elapsed().as_micros() as u64);
        if polled.messages.len() != args.messages as usize {
            bail!(
                "poll at {offset} got {} of {} messages",
                polled.messages.len(),
                args.messages
            );
        }
    }
    figures.mb_per_s.push(mb_per_s(args, started.elapsed()));
    Ok(())
}

fn mb_per_s(args: &Args, elapsed: Duration) -> f64 {
    let bytes = f64::from(args.requests) * f64::from(args.messages) * args.message_size as f64;
    bytes / elapsed.as_secs_f64() / 1e6
}

fn print_row(phase: &str, transport: Transport, figures: &Figures, tcp: Option<&Figures>) {
    let (min, max) = figures.spread();
    let ratio = tcp.map_or(String::new(), |tcp| {
        format!(
            "{:>8.2} {:>8.2}",
            figures.median_mb_per_s() / tcp.median_mb_per_s(),
            figures.p99_ms() / tcp.p99_ms()
        )
    });
    println!(
        "{phase:<6}{:<6}{:>9.1} {:>17} {:>9.2}  {ratio}",
        transport.name(),
        figures.median_mb_per_s(),
        format!("({min:.1}-{max:.1})"),
        figures.p99_ms(),
    );
}

async fn run(args: Args) -> anyhow::Result<()> {
    let clients = connect(&args).await?;
    let stream_name = format!("http-bench-{}", std::process::id());
    clients.tcp.create_stream(&stream_name).await?;
    let stream = Identifier::named(&stream_name)?;
    let one_partition = TopicCreateOptions {
        partitions_count: Some(1),
        ..TopicCreateOptions::default()
    };
    for transport in [Transport::Tcp, Transport::Http] {
        clients
            .tcp
            .create_topic(&stream, transport.name(), &one_partition)
            .await?;
    }
    let mut figures: [[Figures; 2]; 2] = Default::default(); // [phase][transport]
    for run in 0..args.runs {
        let first_offset = u64::from(run) * u64::from(args.requests) * u64::from(args.messages);
        for (t, transport) in [Transport::Tcp, Transport::Http].into_iter().enumerate() {
            let topic = Identifier::named(transport.name())?;
            let client = clients.of(transport);
            send_phase(&args, client, &topic, &stream, &mut figures[0][t]).await?;
            poll_phase(
                &args,
                client,
                (&stream, &topic),
                first_offset,
                &mut figures[1][t],
            )
            .await?;
        }
    }
    clients.tcp.delete_stream(&stream).await?;
    println!(
        "riptide HTTP API vs TCP: {} runs x {} sequential requests x {} messages x {} B per phase",
        args.runs, args.requests, args.messages, args.message_size
    );
    println!(
        "{:<6}{:<6}{:>9} {:>17} {:>9}  {:>8} {:>8}",
        "phase", "via", "MB/s", "(min-max)", "p99 ms", "HTTP/TCP", "p99 x"
    );
    for (p, phase) in ["send", "poll"].into_iter().enumerate() {
        print_row(phase, Transport::Tcp, &figures[p][0], None);
        print_row(phase, Transport::Http, &figures[p][1], Some(&figures[p][0]));
    }
    Ok(())
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(args)) {
        eprintln!("riptide-http-bench: {e:#}");
        std::process::exit(1);
    }
}
