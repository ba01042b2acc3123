//! Topic options blocks: parsing what a client sends (create and update) and encoding the
//! explicit and derived blocks of topic replies, with the value kinds iggy 0.11 uses.
//!
//! Accepted keys and kinds follow iggy's catalog: integers as `Uint32`/`Uint64` or strings,
//! durations as humantime strings ("7 days"), sizes as byte-unit strings ("10 GB"), `unlimited`
//! / `none` for no limit, `server_default` for the default. Unknown keys are refused by name
//! (UnsupportedOptionKey), bad values by InvalidOptionValue.

use riptide_config::limits::{
    TOPIC_SEGMENT_SIZE_MAX_BYTES, TOPIC_SEGMENT_SIZE_MIN_BYTES, TOPIC_SEGMENT_SIZE_MULTIPLE_BYTES,
};
use riptide_protocol::codes::{ErrorCode, OptionValueKind};
use riptide_protocol::reply::types::{OptionDescriptor, WireName};
use riptide_protocol::wire::WireOptions;
use riptide_storage::metadata::{
    CompressionAlgorithm, Durability, TopicOptionKey, TopicOptions, TopicOptionsUpdate,
};

const KIND_STRING: u8 = OptionValueKind::String.wire();
const KIND_BOOL: u8 = OptionValueKind::Bool.wire();
const KIND_UINT8: u8 = OptionValueKind::Uint8.wire();
const KIND_UINT32: u8 = OptionValueKind::Uint32.wire();
const KIND_UINT64: u8 = OptionValueKind::Uint64.wire();

/// One decoded option value, before it is checked against its key.
enum Value<'a> {
    Text(&'a str),
    Unsigned(u64),
    Bool(bool),
}

fn entries(options: &WireOptions) -> Result<Vec<(TopicOptionKey, Value<'_>)>, ErrorCode> {
    let mut parsed = Vec::new();
    for entry in options.iter() {
        let key_name =
            std::str::from_utf8(entry.key).map_err(|_| ErrorCode::UnsupportedOptionKey)?;
        let key = TopicOptionKey::from_name(key_name).ok_or(ErrorCode::UnsupportedOptionKey)?;
        let value = match (entry.value_kind.0, entry.value) {
            (KIND_STRING, text) => {
                Value::Text(std::str::from_utf8(text).map_err(|_| ErrorCode::InvalidOptionValue)?)
            }
            (KIND_UINT64, bytes) => Value::Unsigned(u64::from_le_bytes(
                bytes
                    .try_into()
                    .map_err(|_| ErrorCode::InvalidOptionValue)?,
            )),
            (KIND_UINT32, bytes) => Value::Unsigned(u64::from(u32::from_le_bytes(
                bytes
                    .try_into()
                    .map_err(|_| ErrorCode::InvalidOptionValue)?,
            ))),
            (KIND_UINT8, [byte]) => Value::Unsigned(u64::from(*byte)),
            (KIND_BOOL, [0]) => Value::Bool(false),
            (KIND_BOOL, [1]) => Value::Bool(true),
            _ => return Err(ErrorCode::InvalidOptionValue),
        };
        parsed.push((key, value));
    }
    Ok(parsed)
}

/// Options of a new topic: the defaults (`segment_size_default_bytes` from the configuration)
/// overlaid with what the client sent, which is remembered as explicit.
///
/// # Errors
/// UnsupportedOptionKey / InvalidOptionValue.
pub fn parse_create(
    options: &WireOptions,
    segment_size_default_bytes: u64,
) -> Result<TopicOptions, ErrorCode> {
    let mut topic = TopicOptions {
        segment_size_bytes: segment_size_default_bytes
            .clamp(TOPIC_SEGMENT_SIZE_MIN_BYTES, TOPIC_SEGMENT_SIZE_MAX_BYTES),
        ..TopicOptions::default()
    };
    for (key, value) in entries(options)? {
        apply(&mut topic, key, &value)?;
        topic.explicit = topic.explicit.with(key);
    }
    Ok(topic)
}

fn apply(
    topic: &mut TopicOptions,
    key: TopicOptionKey,
    value: &Value<'_>,
) -> Result<(), ErrorCode> {
    match key {
        TopicOptionKey::CompressionAlgorithm => topic.compression = compression(value)?,
        TopicOptionKey::MessageExpiry => topic.message_expiry_us = expiry_us(value)?,
        TopicOptionKey::MaxTopicSize => topic.max_topic_size_bytes = size_limit(value)?,
        TopicOptionKey::SegmentSize => {
            let size = bytes(value)?;
            if size != 0 {
                if !(TOPIC_SEGMENT_SIZE_MIN_BYTES..=TOPIC_SEGMENT_SIZE_MAX_BYTES).contains(&size)
                    || !size.is_multiple_of(TOPIC_SEGMENT_SIZE_MULTIPLE_BYTES)
                {
                    return Err(ErrorCode::InvalidOptionValue);
                }
                topic.segment_size_bytes = size;
            }
        }
        TopicOptionKey::Durability => topic.durability = durability(value)?,
        TopicOptionKey::ConsumerOffsetDurability => {
            topic.consumer_offset_durability = durability(value)?
        }
        TopicOptionKey::MessagesRequiredToSave => {
            let messages = unsigned(value)?;
            if messages == 0 || messages > 16 * 1024 * 1024 {
                return Err(ErrorCode::InvalidOptionValue);
            }
            topic.messages_required_to_save = messages as u32;
        }
        TopicOptionKey::SizeOfMessagesRequiredToSave => {
            let size = bytes(value)?;
            if size > 1 << 30 {
                return Err(ErrorCode::InvalidOptionValue);
            }
            if size != 0 {
                topic.size_of_messages_required_to_save_bytes = size;
            }
        }
        TopicOptionKey::PreallocateSegments => {
            topic.preallocate_segments = match value {
                Value::Bool(flag) => *flag,
                Value::Text(text) => text.parse().map_err(|_| ErrorCode::InvalidOptionValue)?,
                Value::Unsigned(_) => return Err(ErrorCode::InvalidOptionValue),
            }
        }
    }
    Ok(())
}

/// An update: only compression, expiry and maximum size may change (iggy's rule: the storage
/// layout knobs are fixed at creation).
///
/// # Errors
/// UnsupportedOptionKey for other keys, InvalidOptionValue for bad values.
pub fn parse_update(options: &WireOptions) -> Result<TopicOptionsUpdate, ErrorCode> {
    let mut update = TopicOptionsUpdate::default();
    for (key, value) in entries(options)? {
        match key {
            TopicOptionKey::CompressionAlgorithm => update.compression = Some(compression(&value)?),
            TopicOptionKey::MessageExpiry => update.message_expiry_us = Some(expiry_us(&value)?),
            TopicOptionKey::MaxTopicSize => update.max_topic_size_bytes = Some(size_limit(&value)?),
            _ => return Err(ErrorCode::UnsupportedOptionKey),
        }
    }
    Ok(update)
}

fn unsigned(value: &Value<'_>) -> Result<u64, ErrorCode> {
    match value {
        Value::Unsigned(n) => Ok(*n),
        Value::Text(text) => text
            .trim()
            .parse()
            .map_err(|_| ErrorCode::InvalidOptionValue),
        Value::Bool(_) => Err(ErrorCode::InvalidOptionValue),
    }
}

fn compression(value: &Value<'_>) -> Result<CompressionAlgorithm, ErrorCode> {
    match value {
        Value::Unsigned(1) => Ok(CompressionAlgorithm::None),
        Value::Unsigned(2) => Ok(CompressionAlgorithm::Gzip),
        Value::Text(text) if text.eq_ignore_ascii_case("none") => Ok(CompressionAlgorithm::None),
        Value::Text(text) if text.eq_ignore_ascii_case("gzip") => Ok(CompressionAlgorithm::Gzip),
        _ => Err(ErrorCode::InvalidOptionValue),
    }
}

fn durability(value: &Value<'_>) -> Result<Durability, ErrorCode> {
    match value {
        Value::Text(text) if text.eq_ignore_ascii_case("replicated") => Ok(Durability::Replicated),
        Value::Text(text) if text.eq_ignore_ascii_case("persisted") => Ok(Durability::Persisted),
        _ => Err(ErrorCode::InvalidOptionValue),
    }
}

/// Expiry in µs: `u64::MAX` = never (also for 0 = server default, whose default is never).
fn expiry_us(value: &Value<'_>) -> Result<u64, ErrorCode> {
    match value {
        Value::Unsigned(0) => Ok(u64::MAX),
        Value::Unsigned(n) => Ok(*n),
        Value::Text(text) => match *text {
            "unlimited" | "none" | "None" | "Unlimited" | "never_expire" => Ok(u64::MAX),
            "default" | "server_default" | "Default" | "Server_default" => Ok(u64::MAX),
            other => humantime::parse_duration(other)
                .map(|d| d.as_micros().min(u128::from(u64::MAX - 1)) as u64)
                .map_err(|_| ErrorCode::InvalidOptionValue),
        },
        Value::Bool(_) => Err(ErrorCode::InvalidOptionValue),
    }
}

/// Maximum topic size in bytes: `u64::MAX` = unlimited (also for 0 = server default).
fn size_limit(value: &Value<'_>) -> Result<u64, ErrorCode> {
    match value {
        Value::Text(text)
            if matches!(
                *text,
                "unlimited" | "Unlimited" | "none" | "server_default" | "default"
            ) =>
        {
            Ok(u64::MAX)
        }
        other => match bytes(other)? {
            0 => Ok(u64::MAX),
            n => Ok(n),
        },
    }
}

/// A byte count: an integer, or a string with a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB).
fn bytes(value: &Value<'_>) -> Result<u64, ErrorCode> {
    let Value::Text(text) = value else {
        return unsigned(value);
    };
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| ErrorCode::InvalidOptionValue)?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(ErrorCode::InvalidOptionValue),
    };
    Ok((number * multiplier as f64) as u64)
}

/// The options a topic reply carries: the explicit block (keys the client set) and the derived
/// block (every other key at its resolved value). Durability shows the effective value.
pub fn reply_blocks(
    options: &TopicOptions,
    effective_durability: Durability,
) -> (WireOptions, WireOptions) {
    let mut explicit = Vec::new();
    let mut derived = Vec::new();
    for key in TopicOptionKey::ALL {
        let (kind, value) = encode_value(options, key, effective_durability);
        let target = if options.explicit.contains(key) {
            &mut explicit
        } else {
            &mut derived
        };
        target.push((KIND_STRING, key.name().as_bytes().to_vec(), kind, value));
    }
    (block(&explicit), block(&derived))
}

fn encode_value(
    options: &TopicOptions,
    key: TopicOptionKey,
    durability: Durability,
) -> (u8, Vec<u8>) {
    let text = |s: &str| (KIND_STRING, s.as_bytes().to_vec());
    let durability_name = |d: Durability| {
        if d == Durability::Persisted {
            "persisted"
        } else {
            "replicated"
        }
    };
    match key {
        TopicOptionKey::CompressionAlgorithm => {
            text(if options.compression == CompressionAlgorithm::Gzip {
                "gzip"
            } else {
                "none"
            })
        }
        TopicOptionKey::MessageExpiry => (
            KIND_UINT64,
            options.message_expiry_us.to_le_bytes().to_vec(),
        ),
        TopicOptionKey::MaxTopicSize => (
            KIND_UINT64,
            options.max_topic_size_bytes.to_le_bytes().to_vec(),
        ),
        TopicOptionKey::SegmentSize => (
            KIND_UINT64,
            options.segment_size_bytes.to_le_bytes().to_vec(),
        ),
        TopicOptionKey::Durability => text(durability_name(durability)),
        TopicOptionKey::ConsumerOffsetDurability => {
            text(durability_name(options.consumer_offset_durability))
        }
        TopicOptionKey::MessagesRequiredToSave => (
            KIND_UINT32,
            options.messages_required_to_save.to_le_bytes().to_vec(),
        ),
        TopicOptionKey::SizeOfMessagesRequiredToSave => (
            KIND_UINT64,
            options
                .size_of_messages_required_to_save_bytes
                .to_le_bytes()
                .to_vec(),
        ),
        TopicOptionKey::PreallocateSegments => {
            (KIND_BOOL, vec![u8::from(options.preallocate_segments)])
        }
    }
}

/// The option catalog DescribeOptions answers for a scope (iggy's `OptionsScope` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionsScope {
    Topic,
    Stream,
    User,
}

impl OptionsScope {
    /// The scope of a wire code (1 topic, 2 stream, 3 user), if iggy knows it.
    pub fn from_code(code: u8) -> Option<OptionsScope> {
        match code {
            1 => Some(Self::Topic),
            2 => Some(Self::Stream),
            3 => Some(Self::User),
            _ => None,
        }
    }
}

/// What DescribeOptions answers: every key CreateTopic accepts, in the kind a created topic
/// stores it in, with the value a topic created now gets when the key is not sent (the segment
/// size follows `storage.segment_size_bytes`, durability the server's floor) and what it means.
/// Streams and users take no option keys (iggy 0.11's catalogs for them are empty too).
pub fn catalog(
    scope: OptionsScope,
    segment_size_default_bytes: u64,
    effective_durability: impl Fn(Durability) -> Durability,
) -> Vec<OptionDescriptor> {
    if scope != OptionsScope::Topic {
        return Vec::new();
    }
    let defaults =
        parse_create(&WireOptions::empty(), segment_size_default_bytes).unwrap_or_default();
    let durability = effective_durability(defaults.durability);
    TopicOptionKey::ALL
        .into_iter()
        .filter_map(|key| {
            let (kind, default_value) = encode_value(&defaults, key, durability);
            Some(OptionDescriptor {
                // Every key name is a short constant: never refused.
                key: WireName::new(key.name()).ok()?,
                kind,
                default_value: default_value.into(),
                description: description(key).to_string(),
            })
        })
        .collect()
}

fn description(key: TopicOptionKey) -> &'static str {
    match key {
        TopicOptionKey::CompressionAlgorithm => {
            "how message payloads are compressed: none or gzip; updatable"
        }
        TopicOptionKey::MessageExpiry => {
            "how long a message is kept, in microseconds or as \"7 days\"; unlimited = never expire; updatable"
        }
        TopicOptionKey::MaxTopicSize => {
            "largest size of the topic's data before the oldest segments go, in bytes or as \"10 GB\"; unlimited = no limit; updatable"
        }
        TopicOptionKey::SegmentSize => {
            "size at which a partition's segment is closed and the next begins, in bytes or as \"1 GiB\"; fixed at creation"
        }
        TopicOptionKey::Durability => {
            "when a send is acknowledged: persisted (on this node's stable storage) or replicated (on a majority's); never below storage.ack_floor; fixed at creation"
        }
        TopicOptionKey::ConsumerOffsetDurability => {
            "the same for stored consumer offsets: persisted or replicated; fixed at creation"
        }
        TopicOptionKey::MessagesRequiredToSave => {
            "with memory acknowledgements, messages after which a partition's log is written out; fixed at creation"
        }
        TopicOptionKey::SizeOfMessagesRequiredToSave => {
            "with memory acknowledgements, bytes after which a partition's log is written out; fixed at creation"
        }
        TopicOptionKey::PreallocateSegments => {
            "whether a new segment's file is allocated at its full size up front; fixed at creation"
        }
    }
}

fn block(entries: &[(u8, Vec<u8>, u8, Vec<u8>)]) -> WireOptions {
    let mut bytes = Vec::new();
    for (key_kind, key, value_kind, value) in entries {
        bytes.push(*key_kind);
        bytes.extend_from_slice(&(key.len() as u32).to_le_bytes());
        bytes.extend_from_slice(key);
        bytes.push(*value_kind);
        bytes.extend_from_slice(&(value.len() as u32).to_le_bytes());
        bytes.extend_from_slice(value);
    }
    WireOptions::from_slice(&bytes).unwrap_or_else(|_| WireOptions::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(entries: &[(&str, u8, &[u8])]) -> WireOptions {
        let owned: Vec<_> = entries
            .iter()
            .map(|(k, kind, v)| (KIND_STRING, k.as_bytes().to_vec(), *kind, v.to_vec()))
            .collect();
        block(&owned)
    }

    #[test]
    fn create_overlays_sent_keys_and_marks_them_explicit() {
        let options = wire(&[
            ("durability", KIND_STRING, b"persisted"),
            ("message_expiry", KIND_STRING, b"7 days"),
        ]);
        let parsed = parse_create(&options, 1 << 30).unwrap();
        assert_eq!(parsed.durability, Durability::Persisted);
        assert_eq!(parsed.message_expiry_us, 7 * 24 * 3600 * 1_000_000);
        assert!(parsed.explicit.contains(TopicOptionKey::Durability));
        assert!(!parsed.explicit.contains(TopicOptionKey::SegmentSize));
        assert_eq!(parsed.max_topic_size_bytes, u64::MAX);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert_eq!(
            parse_create(&wire(&[("enforce_fsync", KIND_BOOL, &[1])]), 1 << 30),
            Err(ErrorCode::UnsupportedOptionKey)
        );
        assert_eq!(
            parse_create(&wire(&[("durability", KIND_STRING, b"maybe")]), 1 << 30),
            Err(ErrorCode::InvalidOptionValue)
        );
        assert_eq!(
            parse_update(&wire(&[("segment_size", KIND_UINT64, &[0; 8])])),
            Err(ErrorCode::UnsupportedOptionKey)
        );
    }

    #[test]
    fn sizes_accept_units_and_reply_blocks_split_explicit_from_derived() {
        let options = wire(&[("max_topic_size", KIND_STRING, b"10 GB")]);
        let parsed = parse_create(&options, 1 << 30).unwrap();
        assert_eq!(parsed.max_topic_size_bytes, 10_000_000_000);
        let (explicit, derived) = reply_blocks(&parsed, Durability::Persisted);
        assert_eq!(explicit.iter().count(), 1);
        assert_eq!(derived.iter().count(), TopicOptionKey::ALL.len() - 1);
    }

    #[test]
    fn the_catalog_names_every_topic_key_with_the_floor_applied() {
        let floor = |_: Durability| Durability::Replicated;
        let topic = catalog(OptionsScope::Topic, 8 << 20, floor);
        let keys: Vec<&str> = topic.iter().map(|entry| &*entry.key).collect();
        let all: Vec<&str> = TopicOptionKey::ALL.iter().map(|key| key.name()).collect();
        assert_eq!(keys, all);
        let of = |name: &str| topic.iter().find(|entry| &*entry.key == name).unwrap();
        assert_eq!(of("durability").default_value.as_ref(), b"replicated");
        assert_eq!(
            of("segment_size").default_value.as_ref(),
            (8u64 << 20).to_le_bytes()
        );
        assert!(topic.iter().all(|entry| !entry.description.is_empty()));
        assert!(catalog(OptionsScope::Stream, 8 << 20, floor).is_empty());
        assert!(catalog(OptionsScope::User, 8 << 20, floor).is_empty());
        assert_eq!(OptionsScope::from_code(0), None);
        assert_eq!(OptionsScope::from_code(3), Some(OptionsScope::User));
    }
}
