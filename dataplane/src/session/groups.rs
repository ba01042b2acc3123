//! Consumer-group membership: who is in which group now, and which partitions each member owns.
//!
//! Group definitions are durable metadata; membership is not (a member is a connected client, as
//! in Iggy). Every join, leave, disconnect or partition-count change rebalances the group: the
//! partitions, in order, are dealt round-robin to the members in client-id order, and the group's
//! generation increases so members can tell their assignment changed.

use std::collections::{BTreeMap, HashMap};

/// A group is identified by (stream id, topic id, group id).
pub type GroupKey = (u32, u32, u32);

#[derive(Debug, Default, Clone)]
pub struct Group {
    /// client id → assigned partition ids.
    members: BTreeMap<u32, Vec<u32>>,
    /// client id → index of the next partition to poll among its assigned ones.
    cursors: HashMap<u32, usize>,
    partitions_count: u32,
    pub generation: u64,
}

impl Group {
    fn rebalance(&mut self) {
        let member_ids: Vec<u32> = self.members.keys().copied().collect();
        for assigned in self.members.values_mut() {
            assigned.clear();
        }
        if !member_ids.is_empty() {
            for partition in 0..self.partitions_count {
                let member = member_ids[partition as usize % member_ids.len()];
                if let Some(assigned) = self.members.get_mut(&member) {
                    assigned.push(partition);
                }
            }
        }
        self.cursors.clear();
        self.generation += 1;
    }

    pub fn members(&self) -> &BTreeMap<u32, Vec<u32>> {
        &self.members
    }

    pub fn assigned(&self, client_id: u32) -> Option<&[u32]> {
        self.members.get(&client_id).map(Vec::as_slice)
    }
}

#[derive(Debug, Default)]
pub struct GroupRegistry {
    groups: HashMap<GroupKey, Group>,
}

impl GroupRegistry {
    pub fn group(&self, key: GroupKey) -> Option<&Group> {
        self.groups.get(&key)
    }

    /// Adds a member (idempotent) and rebalances.
    pub fn join(&mut self, key: GroupKey, client_id: u32, partitions_count: u32) -> &Group {
        let group = self.groups.entry(key).or_default();
        group.partitions_count = partitions_count;
        if let std::collections::btree_map::Entry::Vacant(entry) = group.members.entry(client_id) {
            entry.insert(Vec::new());
            group.rebalance();
        }
        group
    }

    /// Removes a member; false when it was not one.
    pub fn leave(&mut self, key: GroupKey, client_id: u32) -> bool {
        let Some(group) = self.groups.get_mut(&key) else {
            return false;
        };
        if group.members.remove(&client_id).is_none() {
            return false;
        }
        group.rebalance();
        true
    }

    /// Whether the client is a member of any group.
    pub fn has_member(&self, client_id: u32) -> bool {
        self.groups
            .values()
            .any(|group| group.members.contains_key(&client_id))
    }

    /// Removes a disconnected client from every group it was in.
    pub fn remove_client(&mut self, client_id: u32) {
        for group in self.groups.values_mut() {
            if group.members.remove(&client_id).is_some() {
                group.rebalance();
            }
        }
    }

    /// Drops a deleted group, or every group of a deleted topic or stream (`None` = any).
    pub fn forget(&mut self, stream_id: u32, topic_id: Option<u32>, group_id: Option<u32>) {
        self.groups.retain(|(s, t, g), _| {
            !(*s == stream_id
                && topic_id.is_none_or(|id| id == *t)
                && group_id.is_none_or(|id| id == *g))
        });
    }

    /// A topic's partition count changed: rebalance its groups.
    pub fn partitions_changed(&mut self, stream_id: u32, topic_id: u32, partitions_count: u32) {
        for ((s, t, _), group) in &mut self.groups {
            if (*s, *t) == (stream_id, topic_id) {
                group.partitions_count = partitions_count;
                group.rebalance();
            }
        }
    }

    /// The partition a member polls next: its assigned partitions in turn.
    pub fn next_partition(&mut self, key: GroupKey, client_id: u32) -> Option<u32> {
        let group = self.groups.get_mut(&key)?;
        let assigned = group.members.get(&client_id)?;
        if assigned.is_empty() {
            return None;
        }
        let cursor = group.cursors.entry(client_id).or_insert(0);
        let partition = assigned[*cursor % assigned.len()];
        *cursor = (*cursor + 1) % assigned.len();
        Some(partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: GroupKey = (0, 0, 0);

    #[test]
    fn partitions_are_dealt_round_robin_and_rebalanced_on_join_and_leave() {
        let mut registry = GroupRegistry::default();
        registry.join(KEY, 7, 3);
        assert_eq!(
            registry.group(KEY).unwrap().assigned(7),
            Some(&[0, 1, 2][..])
        );
        let generation = registry.group(KEY).unwrap().generation;
        registry.join(KEY, 9, 3);
        let group = registry.group(KEY).unwrap();
        assert_eq!(group.assigned(7), Some(&[0, 2][..]));
        assert_eq!(group.assigned(9), Some(&[1][..]));
        assert!(group.generation > generation);
        assert!(registry.leave(KEY, 7));
        assert_eq!(
            registry.group(KEY).unwrap().assigned(9),
            Some(&[0, 1, 2][..])
        );
        assert!(!registry.leave(KEY, 7));
    }

    #[test]
    fn next_partition_cycles_through_the_assignment() {
        let mut registry = GroupRegistry::default();
        registry.join(KEY, 1, 2);
        let polled: Vec<_> = (0..4)
            .map(|_| registry.next_partition(KEY, 1).unwrap())
            .collect();
        assert_eq!(polled, vec![0, 1, 0, 1]);
        assert_eq!(registry.next_partition(KEY, 2), None);
    }

    #[test]
    fn disconnect_and_forget_remove_memberships() {
        let mut registry = GroupRegistry::default();
        registry.join(KEY, 1, 2);
        registry.join((0, 1, 0), 1, 2);
        registry.remove_client(1);
        assert!(registry.group(KEY).unwrap().members().is_empty());
        registry.forget(0, Some(1), None);
        assert!(registry.group((0, 1, 0)).is_none());
        assert!(registry.group(KEY).is_some());
    }
}
