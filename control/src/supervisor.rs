//! Starting and supervising the dataplane process.
//!
//! The policy is a decision table ([`decide`]) kept apart from the process handling so it can be
//! tested row by row: a crash (non-zero exit or a signal) restarts with exponential backoff; a
//! clean exit (0) is never restarted; a configuration error (exit 78) is fatal, because restarting
//! into the same error is a restart loop; too many quick crashes in a row give up.
//!
//! The process side runs on one dedicated thread that owns the child: `PR_SET_PDEATHSIG` ties
//! the dataplane's life to that thread, so a killed riptide-control never leaves an orphan
//! dataplane holding the ports.

use crate::constants::{
    CONSECUTIVE_CRASHES_MAX, EXIT_CODE_CONFIG, RESTART_BACKOFF_INITIAL_MS, RESTART_BACKOFF_MAX_MS,
    RUN_STABLE_MS, STOP_TIMEOUT_MS,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How the dataplane process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum ChildExit {
    /// Exit code 0: a deliberate stop.
    Clean,
    /// Exit code 78 (EX_CONFIG): the dataplane refused its configuration.
    ConfigError,
    /// Any other exit code.
    Failed(i32),
    /// Killed by a signal (number).
    Signaled(i32),
}

impl ChildExit {
    pub fn from_status(status: ExitStatus) -> ChildExit {
        match (status.code(), status.signal()) {
            (Some(0), _) => ChildExit::Clean,
            (Some(EXIT_CODE_CONFIG), _) => ChildExit::ConfigError,
            (Some(code), _) => ChildExit::Failed(code),
            (None, Some(signal)) => ChildExit::Signaled(signal),
            // Neither a code nor a signal does not happen on Linux; treat it as a crash.
            (None, None) => ChildExit::Failed(-1),
        }
    }
}

/// What to do after the dataplane ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It stopped on purpose: stop supervising, exit 0.
    Stop,
    /// It refused its configuration: do not restart, exit 78.
    Fatal,
    /// It crashed: start it again after the delay.
    Restart { delay: Duration },
    /// It keeps crashing: stop trying, exit non-zero.
    GiveUp,
}

/// The crash history that the backoff grows from.
#[derive(Debug, Default, Clone, Copy)]
pub struct Backoff {
    pub consecutive_crashes: u32,
}

/// The supervision policy; `ran_for` is how long the process lived.
pub fn decide(exit: ChildExit, ran_for: Duration, backoff: &mut Backoff) -> Decision {
    match exit {
        ChildExit::Clean => Decision::Stop,
        ChildExit::ConfigError => Decision::Fatal,
        ChildExit::Failed(_) | ChildExit::Signaled(_) => {
            if ran_for >= Duration::from_millis(RUN_STABLE_MS) {
                backoff.consecutive_crashes = 0;
            }
            backoff.consecutive_crashes += 1;
            if backoff.consecutive_crashes > CONSECUTIVE_CRASHES_MAX {
                return Decision::GiveUp;
            }
            let doublings = (backoff.consecutive_crashes - 1).min(16);
            let delay_ms = (RESTART_BACKOFF_INITIAL_MS << doublings).min(RESTART_BACKOFF_MAX_MS);
            Decision::Restart {
                delay: Duration::from_millis(delay_ms),
            }
        }
    }
}

/// Where supervision stands, as /status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Starting,
    Running,
    BackingOff,
    Stopping,
    Stopped,
    ConfigRefused,
    GaveUp,
}

/// The supervisor's public state, shared with the control API.
#[derive(Debug, Clone, Serialize)]
pub struct SupervisorStatus {
    pub state: State,
    pub pid: Option<u32>,
    pub starts: u32,
    pub restarts: u32,
    pub last_exit: Option<ChildExit>,
    /// Wall-clock time (µs since the epoch) of the last start.
    pub started_at_us: Option<u64>,
    pub dataplane_bin: PathBuf,
}

/// How supervision ended, which becomes riptide-control's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Stopped,
    ConfigRefused,
    GaveUp,
    /// The dataplane binary could not be started at all.
    SpawnFailed,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Launch {
    pub dataplane_bin: PathBuf,
    pub config_path: Option<PathBuf>,
}

impl Launch {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.dataplane_bin);
        for name in crate::constants::CLIENT_ENV_VARIABLES {
            command.env_remove(name);
        }
        if let Some(path) = &self.config_path {
            command.arg("--config").arg(path);
        }
        // SAFETY: the closure runs in the forked child before exec and only calls prctl, which is
        // async-signal-safe; it touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc_prctl_pdeathsig() != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command
    }
}

/// Asks the kernel to SIGTERM the child when the thread that spawned it ends.
fn libc_prctl_pdeathsig() -> i32 {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and has no pointer arguments.
    unsafe { nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGTERM) }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Shared handle to the supervisor's status.
pub type SharedStatus = Arc<Mutex<SupervisorStatus>>;

pub fn new_status(launch: &Launch) -> SharedStatus {
    Arc::new(Mutex::new(SupervisorStatus {
        state: State::Starting,
        pid: None,
        starts: 0,
        restarts: 0,
        last_exit: None,
        started_at_us: None,
        dataplane_bin: launch.dataplane_bin.clone(),
    }))
}

fn update(status: &SharedStatus, change: impl FnOnce(&mut SupervisorStatus)) {
    // A poisoned lock only means a reader panicked; the data is still usable.
    let mut guard = status.lock().unwrap_or_else(|e| e.into_inner());
    change(&mut guard);
}

/// Runs the supervision loop until a stop request (any message or a closed channel on `stop`),
/// a clean exit, a configuration error or a crash loop. Blocks; run it on its own thread.
pub fn supervise(launch: &Launch, status: &SharedStatus, stop: &Receiver<()>) -> Outcome {
    let mut backoff = Backoff::default();
    loop {
        let mut child = match launch.command().spawn() {
            Ok(child) => child,
            Err(e) => {
                tracing::error!(bin = %launch.dataplane_bin.display(), "cannot start the dataplane: {e}");
                update(status, |s| s.state = State::GaveUp);
                return Outcome::SpawnFailed;
            }
        };
        let started = Instant::now();
        update(status, |s| {
            s.state = State::Running;
            s.pid = Some(child.id());
            s.starts += 1;
            s.started_at_us = Some(now_us());
        });
        tracing::info!(pid = child.id(), "dataplane started");
        let exit = match wait_or_stop(&mut child, stop) {
            Waited::Exited(exit) => exit,
            Waited::StopRequested => {
                update(status, |s| s.state = State::Stopping);
                let exit = stop_child(&mut child);
                update(status, |s| {
                    s.state = State::Stopped;
                    s.pid = None;
                    s.last_exit = Some(exit);
                });
                return Outcome::Stopped;
            }
        };
        update(status, |s| {
            s.pid = None;
            s.last_exit = Some(exit);
        });
        if let Some(outcome) = after_exit(
            decide(exit, started.elapsed(), &mut backoff),
            exit,
            status,
            stop,
        ) {
            return outcome;
        }
    }
}

/// Acts on a decision: `Some(outcome)` ends supervision, `None` starts the dataplane again.
fn after_exit(
    decision: Decision,
    exit: ChildExit,
    status: &SharedStatus,
    stop: &Receiver<()>,
) -> Option<Outcome> {
    match decision {
        Decision::Stop => {
            tracing::info!("dataplane exited cleanly; not restarting");
            update(status, |s| s.state = State::Stopped);
            Some(Outcome::Stopped)
        }
        Decision::Fatal => {
            tracing::error!(
                "dataplane refused its configuration (exit {EXIT_CODE_CONFIG}); not restarting: fix the key named in its log"
            );
            update(status, |s| s.state = State::ConfigRefused);
            Some(Outcome::ConfigRefused)
        }
        Decision::GiveUp => {
            tracing::error!(
                "dataplane crashed {CONSECUTIVE_CRASHES_MAX} times in a row; giving up"
            );
            update(status, |s| s.state = State::GaveUp);
            Some(Outcome::GaveUp)
        }
        Decision::Restart { delay } => {
            tracing::warn!(
                ?exit,
                delay_ms = delay.as_millis() as u64,
                "dataplane crashed; restarting"
            );
            update(status, |s| {
                s.state = State::BackingOff;
                s.restarts += 1;
            });
            match stop.recv_timeout(delay) {
                Err(RecvTimeoutError::Timeout) => None,
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                    update(status, |s| s.state = State::Stopped);
                    Some(Outcome::Stopped)
                }
            }
        }
    }
}

enum Waited {
    Exited(ChildExit),
    StopRequested,
}

/// How often the supervisor looks at the child while nothing else happens.
const CHILD_POLL_INTERVAL: Duration = Duration::from_millis(100);

fn wait_or_stop(child: &mut Child, stop: &Receiver<()>) -> Waited {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Waited::Exited(ChildExit::from_status(status)),
            Ok(None) => {}
            Err(e) => {
                tracing::error!("cannot wait for the dataplane: {e}");
                return Waited::Exited(ChildExit::Failed(-1));
            }
        }
        match stop.recv_timeout(CHILD_POLL_INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return Waited::StopRequested,
        }
    }
}

/// SIGTERM, then SIGKILL after [`STOP_TIMEOUT_MS`]: the dataplane flushes and syncs on SIGTERM.
fn stop_child(child: &mut Child) -> ChildExit {
    let pid = Pid::from_raw(child.id() as i32);
    if let Err(e) = kill(pid, Signal::SIGTERM) {
        tracing::warn!("cannot SIGTERM the dataplane: {e}");
    }
    let deadline = Instant::now() + Duration::from_millis(STOP_TIMEOUT_MS);
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return ChildExit::from_status(status),
            Ok(None) => std::thread::sleep(CHILD_POLL_INTERVAL),
            Err(_) => break,
        }
    }
    tracing::error!("dataplane did not stop within {STOP_TIMEOUT_MS} ms; SIGKILL");
    let _ = child.kill();
    child
        .wait()
        .map_or(ChildExit::Failed(-1), ChildExit::from_status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> Duration {
        Duration::from_millis(10)
    }

    #[test]
    fn clean_exit_is_never_restarted() {
        assert_eq!(
            decide(ChildExit::Clean, quick(), &mut Backoff::default()),
            Decision::Stop
        );
    }

    #[test]
    fn configuration_error_is_fatal_whatever_the_history() {
        let mut backoff = Backoff {
            consecutive_crashes: 3,
        };
        assert_eq!(
            decide(ChildExit::ConfigError, quick(), &mut backoff),
            Decision::Fatal
        );
    }

    #[test]
    fn crashes_back_off_exponentially_up_to_the_cap() {
        let mut backoff = Backoff::default();
        let mut delays = Vec::new();
        for _ in 0..10 {
            match decide(ChildExit::Signaled(9), quick(), &mut backoff) {
                Decision::Restart { delay } => delays.push(delay.as_millis() as u64),
                other => panic!("expected a restart, got {other:?}"),
            }
        }
        assert_eq!(&delays[..4], &[250, 500, 1000, 2000]);
        assert!(delays.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*delays.last().unwrap(), RESTART_BACKOFF_MAX_MS);
    }

    #[test]
    fn a_long_run_resets_the_backoff() {
        let mut backoff = Backoff {
            consecutive_crashes: 7,
        };
        let stable = Duration::from_millis(RUN_STABLE_MS);
        let decision = decide(ChildExit::Failed(1), stable, &mut backoff);
        assert_eq!(
            decision,
            Decision::Restart {
                delay: Duration::from_millis(RESTART_BACKOFF_INITIAL_MS)
            }
        );
    }

    #[test]
    fn a_crash_loop_gives_up() {
        let mut backoff = Backoff {
            consecutive_crashes: CONSECUTIVE_CRASHES_MAX,
        };
        assert_eq!(
            decide(ChildExit::Failed(101), quick(), &mut backoff),
            Decision::GiveUp
        );
    }

    #[test]
    fn exit_statuses_classify() {
        assert_eq!(
            ChildExit::from_status(ExitStatus::from_raw(0)),
            ChildExit::Clean
        );
        assert_eq!(
            ChildExit::from_status(ExitStatus::from_raw(78 << 8)),
            ChildExit::ConfigError
        );
        assert_eq!(
            ChildExit::from_status(ExitStatus::from_raw(1 << 8)),
            ChildExit::Failed(1)
        );
        assert_eq!(
            ChildExit::from_status(ExitStatus::from_raw(9)),
            ChildExit::Signaled(9)
        );
    }

    /// Real processes: `/bin/sh` stands in for the dataplane binary to produce each kind of exit.
    fn script_launch(dir: &std::path::Path, body: &str) -> Launch {
        let path = dir.join("fake-dataplane");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        Launch {
            dataplane_bin: path,
            config_path: None,
        }
    }

    #[test]
    fn a_process_exiting_78_is_started_once_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("starts");
        let launch = script_launch(
            dir.path(),
            &format!("echo x >> {}\nexit 78", count.display()),
        );
        let status = new_status(&launch);
        let (_tx, rx) = std::sync::mpsc::channel();
        assert_eq!(supervise(&launch, &status, &rx), Outcome::ConfigRefused);
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 1);
        assert_eq!(status.lock().unwrap().state, State::ConfigRefused);
    }

    #[test]
    fn a_crashing_process_is_restarted_then_a_clean_exit_ends_supervision() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("starts");
        // First start crashes, the second exits cleanly.
        let body = format!(
            "echo x >> {c}\n[ $(wc -l < {c}) -ge 2 ] && exit 0\nkill -9 $$",
            c = count.display()
        );
        let launch = script_launch(dir.path(), &body);
        let status = new_status(&launch);
        let (_tx, rx) = std::sync::mpsc::channel();
        assert_eq!(supervise(&launch, &status, &rx), Outcome::Stopped);
        let status = status.lock().unwrap().clone();
        assert_eq!((status.starts, status.restarts), (2, 1));
        assert_eq!(status.last_exit, Some(ChildExit::Clean));
    }

    #[test]
    fn a_stop_request_terminates_the_running_process() {
        let dir = tempfile::tempdir().unwrap();
        let launch = script_launch(
            dir.path(),
            "trap 'exit 0' TERM\nwhile :; do sleep 0.05; done",
        );
        let status = new_status(&launch);
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = {
            let status = status.clone();
            std::thread::spawn(move || supervise(&launch, &status, &rx))
        };
        while status.lock().unwrap().state != State::Running {
            std::thread::sleep(Duration::from_millis(10));
        }
        tx.send(()).unwrap();
        assert_eq!(handle.join().unwrap(), Outcome::Stopped);
        assert_eq!(status.lock().unwrap().last_exit, Some(ChildExit::Clean));
    }
}
