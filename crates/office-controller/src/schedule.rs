//! When `serve` runs each branch's jobs, as pure functions of the clock so that every rule (the spread of
//! incremental syncs, the daily wall-clock time across daylight-saving changes, a missed daily run taken once,
//! the back-off after failures) is tested on a fake clock. The service asks; nothing here sleeps or reads time.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use jiff::civil::Time;
use jiff::tz::TimeZone;

use crate::config::{BranchSchedule, ScheduleConfig};

/// The `[schedule]` section, checked and resolved.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The default interval of incremental syncs.
    pub interval: Duration,
    /// The daily complete sync's wall-clock time.
    pub daily_at: Time,
    /// The daily verify's wall-clock time, if any.
    pub verify_at: Option<Time>,
    /// The zone of the daily times.
    pub time_zone: TimeZone,
    /// Longest run of one job.
    pub job_timeout: Duration,
    /// First pause after a failure.
    pub retry_base: Duration,
    /// How long a job's claim lasts unrenewed.
    pub claim_lease: Duration,
    config: ScheduleConfig,
}

impl Schedule {
    /// Checks `config`: intervals above zero, `HH:MM` times, a known time zone.
    pub fn from_config(config: &ScheduleConfig) -> Result<Schedule> {
        if config.interval_seconds == 0
            || config.job_timeout_seconds == 0
            || config.retry_base_seconds == 0
            || config.claim_lease_seconds < 2
        {
            bail!(
                "invalid [schedule]: interval_seconds, job_timeout_seconds and retry_base_seconds must be greater than zero, claim_lease_seconds at least 2"
            );
        }
        if let Some((name, _)) = config.branches.iter().find(|(_, b)| b.interval_seconds == Some(0)) {
            bail!("invalid [schedule.branches.{name}]: interval_seconds must be greater than zero");
        }
        let time = |key: &str, value: &str| -> Result<Time> {
            value
                .parse::<Time>()
                .with_context(|| format!("[schedule] {key} = {value:?} is not a time: write HH:MM, e.g. \"07:00\""))
        };
        Ok(Schedule {
            interval: Duration::from_secs(config.interval_seconds),
            daily_at: time("daily_at", &config.daily_at)?,
            verify_at: config.verify_at.as_deref().map(|v| time("verify_at", v)).transpose()?,
            time_zone: TimeZone::get(&config.time_zone).with_context(|| {
                format!(
                    "[schedule] time_zone = {:?} is not a known IANA time zone, e.g. \"Europe/Paris\"",
                    config.time_zone
                )
            })?,
            job_timeout: Duration::from_secs(config.job_timeout_seconds),
            retry_base: Duration::from_secs(config.retry_base_seconds),
            claim_lease: Duration::from_secs(config.claim_lease_seconds),
            config: config.clone(),
        })
    }

    /// A branch's overrides (the defaults when it has none).
    pub fn branch(&self, name: &str) -> BranchSchedule {
        self.config.branches.get(name).cloned().unwrap_or_default()
    }

    /// A branch's incremental interval.
    pub fn interval_of(&self, name: &str) -> Duration {
        self.branch(name).interval_seconds.map_or(self.interval, Duration::from_secs)
    }

    /// The first incremental slot of `branch` strictly after `after`. Slots are `phase + k × interval` from the
    /// Unix epoch, the phase a stable hash of the branch's name: branches are spread over the interval, a
    /// branch keeps its slot across restarts, and a run that overran its slot skips to the next one rather than
    /// running twice.
    pub fn next_incremental(&self, branch: &str, after: Timestamp) -> Timestamp {
        next_slot(phase(branch, self.interval_of(branch)), self.interval_of(branch), after)
    }

    /// The next daily complete sync strictly after `after`.
    pub fn next_daily(&self, after: Timestamp) -> Timestamp {
        next_at(self.daily_at, &self.time_zone, after)
    }

    /// The next occurrence of the wall-clock time `at` (in the schedule's zone) strictly after `after`.
    pub fn next_at(&self, at: Time, after: Timestamp) -> Timestamp {
        next_at(at, &self.time_zone, after)
    }

    /// Whether the daily job at `at` is due at `now`, given when it last ran: its latest occurrence up to `now`
    /// came after that run. After days of downtime it is due once, not once per missed day; a job that never
    /// ran waits for its first occurrence.
    pub fn daily_due(&self, at: Time, last_run: Option<Timestamp>, now: Timestamp) -> bool {
        let Some(last) = last_run else { return false };
        previous_at(at, &self.time_zone, now).is_some_and(|occurrence| occurrence > last)
    }

    /// The pause before retrying a branch after `failures` failures in a row: `retry_base` doubled per failure,
    /// at most ten intervals, and from half to all of it by `unit` (a random number in `0..1`), so that branches
    /// failing together do not retry together.
    pub fn backoff(&self, branch: &str, failures: u32, unit: f64) -> Duration {
        let cap = self.interval_of(branch).saturating_mul(10).max(self.retry_base);
        let doubled = self.retry_base.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        doubled.min(cap).mul_f64(0.5 + unit.clamp(0.0, 1.0) / 2.0)
    }
}

/// A branch's offset within its interval, from a stable hash of its name.
pub fn phase(branch: &str, interval: Duration) -> Duration {
    let millis = interval.as_millis().max(1) as u64;
    Duration::from_millis(protocol::sql::name_hash(branch) % millis)
}

fn next_slot(phase: Duration, interval: Duration, after: Timestamp) -> Timestamp {
    let interval_ms = interval.as_millis().max(1) as i64;
    let phase_ms = phase.as_millis() as i64;
    let after_ms = after.as_millisecond();
    let k = (after_ms - phase_ms).div_euclid(interval_ms) + 1;
    Timestamp::from_millisecond(k * interval_ms + phase_ms).unwrap_or(after)
}

/// The wall-clock `at` of `date` in `tz`; a time skipped by a daylight-saving change is taken as the same span
/// after the change (02:30 on a spring-forward night is 03:30), a repeated time at its first occurrence.
fn at_on(date: jiff::civil::Date, at: Time, tz: &TimeZone) -> Option<Timestamp> {
    date.to_datetime(at).to_zoned(tz.clone()).ok().map(|z| z.timestamp())
}

fn next_at(at: Time, tz: &TimeZone, after: Timestamp) -> Timestamp {
    let mut date = after.to_zoned(tz.clone()).date();
    for _ in 0..3 {
        if let Some(t) = at_on(date, at, tz)
            && t > after
        {
            return t;
        }
        date = date.tomorrow().unwrap_or(date);
    }
    after
}

fn previous_at(at: Time, tz: &TimeZone, now: Timestamp) -> Option<Timestamp> {
    let mut date = now.to_zoned(tz.clone()).date();
    for _ in 0..3 {
        if let Some(t) = at_on(date, at, tz)
            && t <= now
        {
            return Some(t);
        }
        date = date.yesterday().ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(f: impl FnOnce(&mut ScheduleConfig)) -> Schedule {
        let mut config = ScheduleConfig::default();
        f(&mut config);
        Schedule::from_config(&config).unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn branches_are_spread_over_the_interval_and_keep_their_slot() {
        let s = schedule(|_| {});
        let mut per_second = std::collections::BTreeMap::new();
        for i in 0..1000 {
            let p = phase(&format!("shop-{i}"), s.interval);
            assert!(p < s.interval);
            *per_second.entry(p.as_secs()).or_insert(0) += 1;
        }
        // 1,000 shops over 300 seconds: spread, never a crowd in one second.
        assert!(per_second.len() > 250, "{} distinct seconds", per_second.len());
        assert!(per_second.values().all(|&n| n <= 12), "{per_second:?}");

        let now = ts("2026-12-04T10:00:00Z");
        let first = s.next_incremental("shop-1", now);
        assert!(first > now && first <= now + s.interval);
        let second = s.next_incremental("shop-1", first);
        assert_eq!(second.duration_since(first).as_secs(), 300);
        // A run that overran two slots goes on at the next slot, once.
        let late = first + Duration::from_secs(700);
        let next = s.next_incremental("shop-1", late);
        assert!(next > late && next.duration_since(first).as_secs() % 300 == 0);
        assert!(next.duration_since(late).as_secs() < 300);
    }

    #[test]
    fn a_branch_override_changes_its_interval_only() {
        let s = schedule(|c| {
            c.branches.insert("slow".into(), BranchSchedule { interval_seconds: Some(3600), ..Default::default() });
        });
        assert_eq!(s.interval_of("slow"), Duration::from_secs(3600));
        assert_eq!(s.interval_of("fast"), Duration::from_secs(300));
        let now = ts("2026-12-04T10:00:00Z");
        let a = s.next_incremental("slow", now);
        assert_eq!(s.next_incremental("slow", a).duration_since(a).as_secs(), 3600);
    }

    #[test]
    fn the_daily_time_follows_the_wall_clock_across_daylight_saving_changes() {
        let s = schedule(|c| c.time_zone = "Europe/Paris".into());
        // Spring forward on 2026-03-29: 07:00 CET, then 07:00 CEST, 23 hours later.
        let saturday = s.next_daily(ts("2026-03-28T05:00:00Z"));
        assert_eq!(saturday, ts("2026-03-28T06:00:00Z"));
        let sunday = s.next_daily(saturday);
        assert_eq!(sunday, ts("2026-03-29T05:00:00Z"));
        assert_eq!(sunday.duration_since(saturday).as_secs(), 23 * 3600);
        // Fall back on 2026-10-25: 25 hours.
        let saturday = s.next_daily(ts("2026-10-24T04:00:00Z"));
        let sunday = s.next_daily(saturday);
        assert_eq!(sunday.duration_since(saturday).as_secs(), 25 * 3600);
        // A time the spring-forward night skips runs an hour later that night, not never.
        let s = schedule(|c| {
            c.time_zone = "Europe/Paris".into();
            c.daily_at = "02:30".into();
        });
        assert_eq!(s.next_daily(ts("2026-03-28T12:00:00Z")), ts("2026-03-29T01:30:00Z"));
    }

    #[test]
    fn a_missed_daily_run_runs_once() {
        let s = schedule(|_| {});
        let at = s.daily_at;
        let last = ts("2026-12-01T07:00:05Z");
        // Down for three days, back at 10:00: due once.
        let now = ts("2026-12-04T10:00:00Z");
        assert!(s.daily_due(at, Some(last), now));
        // Once run, not again until tomorrow's 07:00.
        assert!(!s.daily_due(at, Some(now), now + Duration::from_secs(3600)));
        assert!(!s.daily_due(at, Some(now), ts("2026-12-05T06:59:59Z")));
        assert!(s.daily_due(at, Some(now), ts("2026-12-05T07:00:00Z")));
        // Never run: waits for the first occurrence.
        assert!(!s.daily_due(at, None, now));
    }

    #[test]
    fn failures_back_off_per_branch_within_bounds() {
        let s = schedule(|_| {});
        let mut previous = Duration::ZERO;
        for failures in 1..=30 {
            let low = s.backoff("shop-1", failures, 0.0);
            let high = s.backoff("shop-1", failures, 0.999_999);
            assert!(low <= high && high <= Duration::from_secs(3000), "{failures}: {low:?}..{high:?}");
            assert!(high >= previous, "never shorter after another failure");
            previous = high;
        }
        assert_eq!(s.backoff("shop-1", 1, 0.0), Duration::from_secs(15));
        assert_eq!(s.backoff("shop-1", 30, 0.0), Duration::from_secs(1500));
    }

    #[test]
    fn the_example_configuration_reads_and_its_schedule_checks() {
        let path = std::env::temp_dir().join(format!("branchsync-example-{}.toml", std::process::id()));
        std::fs::write(&path, crate::config::EXAMPLE_CONFIG).unwrap();
        let config = crate::config::Config::load(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let s = Schedule::from_config(&config.schedule).unwrap();
        assert_eq!(s.interval, Duration::from_secs(300));
        assert_eq!(s.daily_at, Time::constant(7, 0, 0, 0));
    }

    #[test]
    fn bad_settings_are_refused_with_what_to_write() {
        for f in [
            (|c: &mut ScheduleConfig| c.interval_seconds = 0) as fn(&mut ScheduleConfig),
            |c| c.daily_at = "7 o'clock".into(),
            |c| c.time_zone = "Mars/Olympus".into(),
            |c| c.verify_at = Some("25:00".into()),
        ] {
            let mut config = ScheduleConfig::default();
            f(&mut config);
            assert!(Schedule::from_config(&config).is_err());
        }
    }
}
