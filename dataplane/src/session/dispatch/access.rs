//! Permissions, enforced on every command, following Iggy's model: global flags, then per-stream
//! flags, then per-topic flags; a broader grant implies the narrower ones (managing implies
//! reading; reading streams implies polling them).

use riptide_storage::metadata::Permissions;

/// The user a request runs as.
pub struct Caller {
    pub user_id: u32,
    pub permissions: Option<Permissions>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ReadServers,
    ManageServers,
    ReadUsers,
    ManageUsers,
    ReadStreams,
    ManageStreams,
    ReadStream(u32),
    ManageStream(u32),
    CreateTopic(u32),
    ReadTopic(u32, u32),
    ManageTopic(u32, u32),
    Poll(u32, u32),
    Send(u32, u32),
}

impl Caller {
    pub fn may(&self, action: Action) -> bool {
        let Some(permissions) = &self.permissions else {
            return false;
        };
        let global = &permissions.global;
        let stream = |id: u32| permissions.streams.get(&id);
        let topic = |s: u32, t: u32| stream(s).and_then(|stream| stream.topics.get(&t));
        match action {
            Action::ReadServers => global.read_servers || global.manage_servers,
            Action::ManageServers => global.manage_servers,
            Action::ReadUsers => global.read_users || global.manage_users,
            Action::ManageUsers => global.manage_users,
            Action::ReadStreams => global.read_streams || global.manage_streams,
            Action::ManageStreams => global.manage_streams,
            Action::ReadStream(s) => {
                global.read_streams
                    || global.manage_streams
                    || stream(s).is_some_and(|p| p.read_stream || p.manage_stream)
            }
            Action::ManageStream(s) => {
                global.manage_streams || stream(s).is_some_and(|p| p.manage_stream)
            }
            Action::CreateTopic(s) => {
                global.manage_streams
                    || global.manage_topics
                    || stream(s).is_some_and(|p| p.manage_stream || p.manage_topics)
            }
            Action::ReadTopic(s, t) => {
                global.read_streams
                    || global.manage_streams
                    || global.read_topics
                    || global.manage_topics
                    || stream(s).is_some_and(|p| {
                        p.read_stream || p.manage_stream || p.read_topics || p.manage_topics
                    })
                    || topic(s, t).is_some_and(|p| p.read_topic || p.manage_topic)
            }
            Action::ManageTopic(s, t) => {
                global.manage_streams
                    || global.manage_topics
                    || stream(s).is_some_and(|p| p.manage_stream || p.manage_topics)
                    || topic(s, t).is_some_and(|p| p.manage_topic)
            }
            Action::Poll(s, t) => {
                global.read_streams
                    || global.manage_streams
                    || global.poll_messages
                    || stream(s)
                        .is_some_and(|p| p.read_stream || p.manage_stream || p.poll_messages)
                    || topic(s, t)
                        .is_some_and(|p| p.read_topic || p.manage_topic || p.poll_messages)
            }
            Action::Send(s, t) => {
                global.manage_streams
                    || global.send_messages
                    || stream(s).is_some_and(|p| p.manage_stream || p.send_messages)
                    || topic(s, t).is_some_and(|p| p.manage_topic || p.send_messages)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riptide_storage::metadata::{StreamPermissions, TopicPermissions};

    fn caller(permissions: Option<Permissions>) -> Caller {
        Caller {
            user_id: 1,
            permissions,
        }
    }

    #[test]
    fn root_may_do_everything_and_no_permissions_nothing() {
        let root = caller(Some(Permissions::root()));
        let nobody = caller(None);
        for action in [
            Action::ManageServers,
            Action::ManageUsers,
            Action::Send(0, 0),
            Action::Poll(3, 4),
        ] {
            assert!(root.may(action));
            assert!(!nobody.may(action));
        }
    }

    #[test]
    fn topic_grants_apply_to_that_topic_only() {
        let mut permissions = Permissions::default();
        let mut stream = StreamPermissions::default();
        stream.topics.insert(
            2,
            TopicPermissions {
                send_messages: true,
                ..TopicPermissions::default()
            },
        );
        permissions.streams.insert(1, stream);
        let user = caller(Some(permissions));
        assert!(user.may(Action::Send(1, 2)));
        assert!(!user.may(Action::Send(1, 3)));
        assert!(!user.may(Action::Poll(1, 2)));
        assert!(!user.may(Action::ManageStreams));
    }

    #[test]
    fn reading_streams_implies_polling() {
        let mut permissions = Permissions::default();
        permissions.global.read_streams = true;
        let user = caller(Some(permissions));
        assert!(user.may(Action::Poll(5, 6)));
        assert!(!user.may(Action::Send(5, 6)));
    }
}
