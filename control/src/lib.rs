//! riptide-control: work in progress.
