//! Retention decisions: which sealed segments expire or exceed the size limit. Pure functions
//! over segment summaries, so the rules are tested without files.

/// What retention needs to know about one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentSummary {
    pub size_bytes: u64,
    pub last_timestamp_us: Option<u64>,
}

/// How many of the oldest segments to delete. The last (active) segment is never counted.
pub(crate) fn segments_to_delete(
    segments: &[SegmentSummary],
    now_us: u64,
    expiry_us: Option<u64>,
    max_size_bytes: Option<u64>,
) -> usize {
    let sealed = segments.len().saturating_sub(1);
    let mut count = 0;
    if let Some(expiry_us) = expiry_us {
        while count < sealed {
            let expired = segments[count]
                .last_timestamp_us
                .is_none_or(|t| t.saturating_add(expiry_us) <= now_us);
            if !expired {
                break;
            }
            count += 1;
        }
    }
    if let Some(max_size_bytes) = max_size_bytes {
        let mut total: u64 = segments[count..].iter().map(|s| s.size_bytes).sum();
        while count < sealed && total > max_size_bytes {
            total -= segments[count].size_bytes;
            count += 1;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(size_bytes: u64, last: u64) -> SegmentSummary {
        SegmentSummary {
            size_bytes,
            last_timestamp_us: Some(last),
        }
    }

    #[test]
    fn expiry_deletes_only_old_sealed_segments() {
        let segments = [seg(10, 100), seg(10, 200), seg(10, 300)];
        assert_eq!(segments_to_delete(&segments, 249, Some(50), None), 1);
        assert_eq!(
            segments_to_delete(&segments, 10_000, Some(50), None),
            2,
            "never the active one"
        );
        assert_eq!(segments_to_delete(&segments, 10_000, None, None), 0);
    }

    #[test]
    fn size_limit_deletes_oldest_until_under() {
        let segments = [seg(100, 1), seg(100, 2), seg(100, 3), seg(50, 4)];
        assert_eq!(segments_to_delete(&segments, 0, None, Some(260)), 1);
        assert_eq!(segments_to_delete(&segments, 0, None, Some(10)), 3);
        assert_eq!(segments_to_delete(&segments, 0, None, Some(1000)), 0);
        assert_eq!(segments_to_delete(&[seg(100, 1)], 0, Some(0), Some(0)), 0);
    }
}
