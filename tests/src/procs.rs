//! Looking at processes through /proc, for the tests that check a cancelled
//! CLI run leaves nothing behind.

use std::path::Path;

/// The fields of /proc/<pid>/stat after the command name (state first,
/// then ppid, then the process group).
pub fn stat_fields(pid: i64) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Whether `pid` is a live (non-zombie) process.
pub fn alive(pid: i64) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s != "Z"))
}

fn pids() -> Vec<i64> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i64>().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Live processes whose process group is `pgid`.
pub fn group_members(pgid: i64) -> Vec<i64> {
    pids()
        .into_iter()
        .filter(|pid| {
            stat_fields(*pid)
                .is_some_and(|f| f[0] != "Z" && f.get(2).and_then(|g| g.parse().ok()) == Some(pgid))
        })
        .collect()
}

/// Live processes working in `dir` whose command line contains `name`
/// (the shim and the daemon it started work there too, under other names).
pub fn named_in(dir: &Path, name: &str) -> Vec<i64> {
    pids()
        .into_iter()
        .filter(|pid| {
            alive(*pid)
                && std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir)
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(name))
        })
        .collect()
}

/// The process-group leader among `pids`.
pub fn leader(pids: &[i64]) -> Option<i64> {
    pids.iter()
        .copied()
        .find(|pid| stat_fields(*pid).and_then(|f| f.get(2)?.parse::<i64>().ok()) == Some(*pid))
}

/// Waits up to `within` for process group `pgid` to empty; returns who is
/// left (empty when it emptied).
pub async fn wait_group_gone(pgid: i64, within: std::time::Duration) -> Vec<i64> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let left = group_members(pgid);
        if left.is_empty() || std::time::Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
