//! riptide dataplane library: configuration, sessions, dispatch, shards and network backends.
