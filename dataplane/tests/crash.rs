//! Crash test: producers send through the official SDK while the server is SIGKILLed and
//! restarted several times; afterwards every confirmed message must be polled back byte-for-byte
//! at its confirmed offset, offsets must be contiguous, and anything else in the log must be a
//! whole batch that a producer really sent (an unconfirmed send may land: at-least-once).

mod common;

use anyhow::{bail, ensure, Context};
use common::*;
use iggy::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ROUNDS: u32 = 5;
const PRODUCERS: u32 = 2;
const PARTITIONS: u32 = 2;
const MESSAGES_PER_BATCH: u32 = 8;
/// The kill lands once this many batches were confirmed in the round, while producers still send.
const CONFIRMED_BATCHES_BEFORE_KILL: u32 = 12;
/// Upper bound on batches one producer sends in a round (the kill normally ends it much earlier).
const BATCHES_PER_ROUND_MAX: u32 = 400;
const TEST_TIMEOUT: Duration = Duration::from_secs(240);
const ROUND_TIMEOUT: Duration = Duration::from_secs(40);
const POLL_CHUNK_MESSAGES: u32 = 500;

/// One batch a producer tried to send.
#[derive(Clone, Debug)]
struct Attempt {
    partition_id: u32,
    payloads: Vec<Vec<u8>>,
    /// Base offset from the confirmation, if the send was confirmed.
    confirmed_at: Option<u64>,
}

/// Deterministic, varied payload bytes: a unique 12-byte tag, then pseudo-random bytes of a
/// length between 1 and ~3 KB so batches straddle direct-I/O blocks in different ways.
fn payload(round: u32, producer: u32, batch: u32, index: u32) -> Vec<u8> {
    let mut seed = u64::from(round) << 48
        | u64::from(producer) << 40
        | u64::from(batch) << 16
        | u64::from(index);
    seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let length = 12 + (seed % 3000) as usize;
    let mut out = Vec::with_capacity(length);
    out.extend_from_slice(&round.to_le_bytes());
    out.extend_from_slice(&(producer << 16 | index).to_le_bytes());
    out.extend_from_slice(&batch.to_le_bytes());
    while out.len() < length {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.push(seed as u8);
    }
    out
}

/// Sends batches until the first failure (the kill), recording every attempt.
async fn produce(
    server_connection: String,
    round: u32,
    producer: u32,
    confirmed_in_round: Arc<AtomicU32>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
) -> anyhow::Result<()> {
    let client = IggyClient::from_connection_string(&server_connection).sdk("client")?;
    client.connect().await.sdk("connect")?;
    let partition_id = producer % PARTITIONS;
    for batch in 0..BATCHES_PER_ROUND_MAX {
        let payloads: Vec<Vec<u8>> = (0..MESSAGES_PER_BATCH)
            .map(|i| payload(round, producer, batch, i))
            .collect();
        let mut messages: Vec<IggyMessage> =
            payloads.iter().cloned().map(IggyMessage::from).collect();
        let index = {
            let mut attempts = attempts.lock().expect("attempts lock");
            attempts.push(Attempt {
                partition_id,
                payloads,
                confirmed_at: None,
            });
            attempts.len() - 1
        };
        let sent = client
            .send_messages(
                &id(0),
                &id(0),
                &Partitioning::partition_id(partition_id),
                &mut messages,
            )
            .await;
        match sent {
            Ok(response) => {
                let confirmation = response
                    .confirmations
                    .first()
                    .context("send without confirmation")?;
                ensure!(
                    confirmation.partition_id == partition_id && response.confirmations.len() == 1,
                    "confirmations {:?}",
                    response
                        .confirmations
                        .iter()
                        .map(|c| (c.partition_id, c.base_offset))
                        .collect::<Vec<_>>()
                );
                attempts.lock().expect("attempts lock")[index].confirmed_at =
                    Some(confirmation.base_offset);
                confirmed_in_round.fetch_add(1, Ordering::SeqCst);
            }
            // The server was killed under us: this batch's fate is unknown, the round is over.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

async fn crash_round(
    server: &mut Server,
    round: u32,
    attempts: &Arc<Mutex<Vec<Attempt>>>,
) -> anyhow::Result<()> {
    let confirmed_in_round = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for producer in 0..PRODUCERS {
        tasks.push(tokio::spawn(produce(
            server.connection_string(),
            round,
            producer,
            confirmed_in_round.clone(),
            attempts.clone(),
        )));
    }
    let deadline = tokio::time::Instant::now() + ROUND_TIMEOUT;
    while confirmed_in_round.load(Ordering::SeqCst) < CONFIRMED_BATCHES_BEFORE_KILL {
        if tokio::time::Instant::now() > deadline || tasks.iter().all(|t| t.is_finished()) {
            bail!(
                "round {round}: only {} batches confirmed before the producers stopped",
                confirmed_in_round.load(Ordering::SeqCst)
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.sigkill()?;
    for task in tasks {
        tokio::time::timeout(ROUND_TIMEOUT, task)
            .await
            .context("a producer hung after the kill")???;
    }
    server
        .start_again()
        .with_context(|| format!("restart after round {round}"))?;
    Ok(())
}

/// Reads a whole partition back with the Offset strategy.
async fn read_partition(
    client: &IggyClient,
    partition_id: u32,
) -> anyhow::Result<Vec<(u64, Vec<u8>)>> {
    let mut out = Vec::new();
    loop {
        let polled = client
            .poll_messages(
                &id(0),
                &id(0),
                Some(partition_id),
                &Consumer::default(),
                &PollingStrategy::offset(out.len() as u64),
                POLL_CHUNK_MESSAGES,
                false,
            )
            .await
            .sdk("poll after the crashes")?;
        if polled.messages.is_empty() {
            return Ok(out);
        }
        for message in polled.messages {
            out.push((message.header.offset, message.payload.to_vec()));
        }
    }
}

/// Every confirmed batch sits at its confirmed offset byte-for-byte; every other stretch of the
/// log is a complete batch some producer attempted.
fn verify_partition(
    partition_id: u32,
    log: &[(u64, Vec<u8>)],
    attempts: &[Attempt],
) -> anyhow::Result<u32> {
    for (position, (offset, _)) in log.iter().enumerate() {
        ensure!(
            *offset == position as u64,
            "partition {partition_id}: offset {offset} at position {position}"
        );
    }
    let mut confirmed_by_offset: BTreeMap<u64, &Attempt> = BTreeMap::new();
    let mut attempted_by_first: HashMap<&[u8], &Attempt> = HashMap::new();
    for attempt in attempts.iter().filter(|a| a.partition_id == partition_id) {
        attempted_by_first.insert(&attempt.payloads[0], attempt);
        if let Some(base) = attempt.confirmed_at {
            ensure!(
                confirmed_by_offset.insert(base, attempt).is_none(),
                "partition {partition_id}: two confirmed batches at offset {base}"
            );
        }
    }
    for (base, attempt) in &confirmed_by_offset {
        for (i, expected) in attempt.payloads.iter().enumerate() {
            let at = *base as usize + i;
            let (_, got) = log.get(at).with_context(|| {
                format!(
                    "partition {partition_id}: confirmed offset {at} lost (log has {})",
                    log.len()
                )
            })?;
            ensure!(
                got == expected,
                "partition {partition_id}: confirmed offset {at} holds different bytes"
            );
        }
    }
    let mut position = 0usize;
    let mut unconfirmed_landed = 0;
    while position < log.len() {
        let first = &log[position].1;
        let attempt = attempted_by_first.get(first.as_slice()).with_context(|| {
            format!("partition {partition_id}: offset {position} holds bytes no producer sent")
        })?;
        for (i, expected) in attempt.payloads.iter().enumerate() {
            let got = log.get(position + i).map(|(_, p)| p);
            ensure!(
                got == Some(expected),
                "partition {partition_id}: torn batch at offset {position}"
            );
        }
        if attempt.confirmed_at != Some(position as u64) {
            unconfirmed_landed += 1;
        }
        position += attempt.payloads.len();
    }
    Ok(unconfirmed_landed)
}

#[tokio::test]
async fn confirmed_messages_survive_repeated_sigkill() {
    let mut server = Server::start().expect("server starts");
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let result = bounded(TEST_TIMEOUT, async {
        {
            let client = server.client().await?;
            client.create_stream("crash").await.sdk("create_stream")?;
            let options = TopicCreateOptions {
                partitions_count: Some(PARTITIONS),
                durability: Durability::Persisted,
                ..Default::default()
            };
            client.create_topic(&id(0), "t", &options).await.sdk("create_topic")?;
        }
        for round in 0..ROUNDS {
            crash_round(&mut server, round, &attempts).await?;
        }
        let client = server.client().await?;
        let attempts = attempts.lock().expect("attempts lock").clone();
        let confirmed = attempts.iter().filter(|a| a.confirmed_at.is_some()).count();
        let mut unconfirmed_landed = 0;
        for partition_id in 0..PARTITIONS {
            let log = read_partition(&client, partition_id).await?;
            unconfirmed_landed += verify_partition(partition_id, &log, &attempts)?;
        }
        println!(
            "crash test: {ROUNDS} SIGKILLs, {} batches attempted, {confirmed} confirmed and all read back, \
             {unconfirmed_landed} unconfirmed batches landed whole",
            attempts.len()
        );
        Ok(())
    })
    .await;
    result.expect("crash test");
    server.finish().expect("server still healthy");
}
