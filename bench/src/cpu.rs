//! CPU accounting on a machine the benchmark may share with others: the
//! machine as a whole, single processes, and a workload made of processes
//! plus the kernel's softirq threads.

use std::time::Duration;

/// Busy and total CPU time of the whole machine, from `/proc/stat`.
#[derive(Clone, Copy, Debug)]
pub struct CpuTimes {
    busy: u64,
    total: u64,
}

impl CpuTimes {
    /// Now. Panics if `/proc/stat` is unreadable (every Linux has it).
    pub fn now() -> CpuTimes {
        let stat = std::fs::read_to_string("/proc/stat").expect("reading /proc/stat");
        let fields: Vec<u64> = stat
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("cpu "))
            .expect("a `cpu` line in /proc/stat")
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        CpuTimes {
            busy: total - idle,
            total,
        }
    }

    /// CPU busy between `self` and `later`, in CPUs (2.0 = two cores busy
    /// the whole time).
    pub fn busy_cpus(&self, later: &CpuTimes) -> f64 {
        let total = later.total.saturating_sub(self.total) as f64;
        if total == 0.0 {
            return 0.0;
        }
        later.busy.saturating_sub(self.busy) as f64 / total * cpus() as f64
    }
}

/// CPU time (user + system) a process has used so far.
pub fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64(fields.iter().sum::<u64>() as f64 / hz)
}

/// CPU time spent on a workload on a machine others share: the given
/// processes' user and system time, plus the `ksoftirqd` threads'.
///
/// With tick-based accounting, softirq work (where the kernel does network
/// processing) is charged to whichever task it interrupts: our processes
/// when their own system calls trigger it, `ksoftirqd` when it is deferred.
/// Softirq work that lands on another tenant's task or on an idle CPU is
/// missed, so this understates a little; the machine-wide figure
/// ([`CpuTimes`]) overstates a lot when others build or test meanwhile.
#[derive(Clone, Debug)]
pub struct WorkloadCpu {
    processes: Duration,
    ksoftirqd: Duration,
}

impl WorkloadCpu {
    pub fn now(pids: &[u32]) -> WorkloadCpu {
        WorkloadCpu {
            processes: pids.iter().map(|&p| process_cpu(p)).sum(),
            ksoftirqd: ksoftirqd().into_iter().map(process_cpu).sum(),
        }
    }

    /// CPU-seconds spent between `self` and `later`.
    pub fn seconds_until(&self, later: &WorkloadCpu) -> f64 {
        later.processes.saturating_sub(self.processes).as_secs_f64()
            + later.ksoftirqd.saturating_sub(self.ksoftirqd).as_secs_f64()
    }
}

/// The kernel's softirq threads.
fn ksoftirqd() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("ksoftirqd/"))
        })
        .collect()
}

/// How many CPUs the machine has.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_times_move_forward() {
        let a = CpuTimes::now();
        let w = WorkloadCpu::now(&[std::process::id()]);
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let b = CpuTimes::now();
        let busy = a.busy_cpus(&b);
        assert!((0.0..=cpus() as f64 + 0.01).contains(&busy), "{busy}");
        assert!(process_cpu(std::process::id()) > Duration::ZERO);
        assert!(w.seconds_until(&WorkloadCpu::now(&[std::process::id()])) >= 0.0);
    }
}
