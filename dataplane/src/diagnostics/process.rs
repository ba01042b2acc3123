//! `process_list.txt` and `resource_usage.txt`: this process and its threads as `/proc` shows
//! them (iggy's server runs `ps aux` and `top`; riptide reads the kernel's files itself and
//! reports its own process, the one the snapshot is about).

use std::fmt::Write as _;

/// Most threads listed (riptide runs a few per core).
const THREADS_MAX: usize = 4096;

/// Fields of `/proc/<pid>/task/<tid>/stat` after the `(comm)`: state is the first, utime the
/// 12th, stime the 13th, processor the 37th (`proc(5)`, counting from `state` = 0).
const STAT_STATE: usize = 0;
const STAT_UTIME: usize = 11;
const STAT_STIME: usize = 12;
const STAT_PROCESSOR: usize = 36;

/// The process summary (`/proc/self/status`) and one line per thread: id, name, state, user and
/// system CPU seconds, the CPU it last ran on.
pub fn threads() -> String {
    let mut text = String::from("=== process (/proc/self/status) ===\n");
    text.push_str(&status_lines(&[
        "Name", "State", "Pid", "PPid", "Threads", "VmRSS", "VmHWM", "VmSize",
    ]));
    let ticks = clock_ticks_per_second();
    let _ = writeln!(
        text,
        "\n=== threads (/proc/self/task) ===\n{:>8}  {:<16} {:<5} {:>10} {:>10} {:>4}",
        "tid", "name", "state", "user_s", "system_s", "cpu"
    );
    let mut tids: Vec<u32> = match std::fs::read_dir("/proc/self/task") {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect(),
        Err(error) => {
            let _ = writeln!(text, "cannot read /proc/self/task: {error}");
            return text;
        }
    };
    tids.sort_unstable();
    let total = tids.len();
    for tid in tids.into_iter().take(THREADS_MAX) {
        // A thread may exit between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
            continue;
        };
        let Some(thread) = ThreadStat::parse(&stat) else {
            continue;
        };
        let _ = writeln!(
            text,
            "{tid:>8}  {:<16} {:<5} {:>10.2} {:>10.2} {:>4}",
            thread.name,
            thread.state,
            thread.user_ticks as f64 / ticks,
            thread.system_ticks as f64 / ticks,
            thread.processor
        );
    }
    if total > THREADS_MAX {
        let _ = writeln!(text, "... {} more threads", total - THREADS_MAX);
    }
    text
}

/// CPU time, memory, faults, context switches and I/O of this process, open descriptors, and the
/// machine's load and memory.
pub fn resource_usage() -> String {
    let mut text = String::from("=== process (getrusage RUSAGE_SELF) ===\n");
    // SAFETY: `rusage` is plain data that getrusage fills; a zeroed one is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into the live, exclusively borrowed struct.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 {
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        let _ = writeln!(text, "user_cpu_s: {:.3}", seconds(usage.ru_utime));
        let _ = writeln!(text, "system_cpu_s: {:.3}", seconds(usage.ru_stime));
        let _ = writeln!(text, "max_rss_kib: {}", usage.ru_maxrss);
        let _ = writeln!(text, "minor_faults: {}", usage.ru_minflt);
        let _ = writeln!(text, "major_faults: {}", usage.ru_majflt);
        let _ = writeln!(text, "voluntary_context_switches: {}", usage.ru_nvcsw);
        let _ = writeln!(text, "involuntary_context_switches: {}", usage.ru_nivcsw);
        let _ = writeln!(text, "block_input_ops: {}", usage.ru_inblock);
        let _ = writeln!(text, "block_output_ops: {}", usage.ru_oublock);
    } else {
        let _ = writeln!(text, "getrusage: {}", std::io::Error::last_os_error());
    }
    let descriptors = std::fs::read_dir("/proc/self/fd").map(Iterator::count);
    match descriptors {
        Ok(count) => {
            let _ = writeln!(text, "open_descriptors: {count}");
        }
        Err(error) => {
            let _ = writeln!(text, "open_descriptors: cannot read /proc/self/fd: {error}");
        }
    }
    text.push_str("\n=== memory (/proc/self/status) ===\n");
    text.push_str(&status_lines(&[
        "VmPeak", "VmSize", "VmLck", "VmHWM", "VmRSS", "RssAnon", "RssFile", "VmSwap",
    ]));
    for (title, path) in [
        ("I/O (/proc/self/io)", "/proc/self/io"),
        ("machine load (/proc/loadavg)", "/proc/loadavg"),
    ] {
        let _ = writeln!(text, "\n=== {title} ===");
        text.push_str(&std::fs::read_to_string(path).unwrap_or_else(|e| format!("{e}\n")));
    }
    text.push_str("\n=== machine memory (/proc/meminfo) ===\n");
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    for line in meminfo.lines().filter(|line| {
        [
            "MemTotal:",
            "MemAvailable:",
            "HugePages_Total:",
            "HugePages_Free:",
        ]
        .iter()
        .any(|key| line.starts_with(key))
    }) {
        let _ = writeln!(text, "{line}");
    }
    text
}

/// The lines of `/proc/self/status` with these keys, in the file's order.
fn status_lines(keys: &[&str]) -> String {
    let status = match std::fs::read_to_string("/proc/self/status") {
        Ok(status) => status,
        Err(error) => return format!("cannot read /proc/self/status: {error}\n"),
    };
    status
        .lines()
        .filter(|line| {
            line.split_once(':')
                .is_some_and(|(key, _)| keys.contains(&key))
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system; no memory is involved.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// What a thread's `stat` line says about it.
#[derive(Debug, PartialEq)]
struct ThreadStat {
    name: String,
    state: char,
    user_ticks: u64,
    system_ticks: u64,
    processor: u32,
}

impl ThreadStat {
    /// `tid (comm) state ...`: the name may hold spaces and parentheses, so it ends at the last
    /// `)`.
    fn parse(line: &str) -> Option<ThreadStat> {
        let open = line.find('(')?;
        let close = line.rfind(')')?;
        let name = line.get(open + 1..close)?.to_string();
        let fields: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
        Some(ThreadStat {
            name,
            state: fields.get(STAT_STATE)?.chars().next()?,
            user_ticks: fields.get(STAT_UTIME)?.parse().ok()?,
            system_ticks: fields.get(STAT_STIME)?.parse().ok()?,
            processor: fields.get(STAT_PROCESSOR)?.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_whose_name_has_spaces_and_parentheses() {
        let line = "4242 (rip (net) 0) S 1 4242 4242 0 -1 4194368 120 0 0 0 731 52 0 0 20 0 9 \
                    0 3341 123456 789 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 3 0 0 \
                    0 0 0";
        assert_eq!(
            ThreadStat::parse(line),
            Some(ThreadStat {
                name: "rip (net) 0".to_string(),
                state: 'S',
                user_ticks: 731,
                system_ticks: 52,
                processor: 3,
            })
        );
        assert_eq!(ThreadStat::parse("4242 (cut"), None);
        assert_eq!(ThreadStat::parse("4242 (x) S 1 2"), None);
    }

    #[test]
    fn lists_this_process_and_a_named_thread() {
        let (ready, wait) = std::sync::mpsc::channel::<()>();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("snapshot-probe".to_string())
            .spawn(move || {
                ready.send(()).unwrap();
                let _ = stopped.recv();
            })
            .unwrap();
        wait.recv().unwrap();
        let text = threads();
        stop.send(()).unwrap();
        thread.join().unwrap();
        assert!(text.contains("VmRSS:"), "{text}");
        // Its state is whatever the kernel says at the moment of the read (it may not be
        // asleep yet): any of the letters of proc(5).
        let probe_state = text
            .lines()
            .find(|l| l.contains("snapshot-probe"))
            .and_then(|l| l.split_whitespace().nth(2));
        assert!(
            probe_state.is_some_and(|state| state.len() == 1 && "RSDTtZXIPW".contains(state)),
            "{text}"
        );
        let usage = resource_usage();
        assert!(usage.contains("user_cpu_s: "), "{usage}");
        assert!(usage.contains("MemTotal:"), "{usage}");
    }
}
