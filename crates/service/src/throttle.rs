//! Counts failed logins per client address and per user name, so that password guessing is refused (HTTP 429)
//! for a while instead of costing an argon2 hash each time, while a correct login from elsewhere is not held up.
//!
//! The design, and why (docs/protocol.md, Transport, says the same):
//! - **Per address, a lockout.** `auth_failures_per_address` failures from one address within
//!   `auth_failure_window_seconds` lock that address out for `auth_lockout_seconds`: every request from it gets
//!   429 with `Retry-After`, even with correct credentials, because serving a correct (cached) login from a
//!   locked address would let it test guesses against the cache at network speed. A success from an address
//!   that is not locked clears its count.
//! - **Per user, only failed addresses are refused.** `auth_failures_per_user` failures for one user (from any
//!   addresses) within the window mark the user as under attack for `auth_lockout_seconds`; then a login for that
//!   user that is not already verified (not in the success cache) is refused with 429 *only* from an address that
//!   has itself failed in the window. An address with a clean record, such as the office's, still gets its
//!   password checked at once, so many attackers spread over many addresses cannot lock the office out, and each
//!   of them gets one guess per window before its own record stops it.
//!
//! Only known user names get a per-user record (bounded by the configuration); addresses are bounded by
//! [`MAX_ADDRESSES`], IPv6 ones are counted per /64 (one host usually owns a whole /64).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most addresses remembered at once; beyond it expired records are dropped, then the oldest unlocked one.
pub const MAX_ADDRESSES: usize = 4096;

/// The thresholds, from the service's limits.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Failures from one address within the window that lock it out.
    pub per_address: u32,
    /// Failures for one user within the window that make its failed addresses wait.
    pub per_user: u32,
    /// The window failures are counted in.
    pub window: Duration,
    /// How long a lockout lasts.
    pub lockout: Duration,
}

/// Failures of one address or user.
#[derive(Debug, Clone, Copy)]
struct Record {
    window_start: Instant,
    failures: u32,
    locked_until: Option<Instant>,
}

impl Record {
    fn new(now: Instant) -> Record {
        Record { window_start: now, failures: 0, locked_until: None }
    }

    /// The remaining lockout, if any.
    fn locked(&self, now: Instant) -> Option<Duration> {
        self.locked_until.filter(|until| *until > now).map(|until| until - now)
    }

    /// Whether the record says nothing any more: no lockout and its window is over.
    fn expired(&self, now: Instant, window: Duration) -> bool {
        self.locked(now).is_none() && now.duration_since(self.window_start) >= window
    }

    /// Whether it has failed within the current window.
    fn failed_recently(&self, now: Instant, window: Duration) -> bool {
        self.failures > 0 && now.duration_since(self.window_start) < window
    }

    /// Counts one failure; locks for `lockout` once `threshold` is reached within the window.
    fn fail(&mut self, now: Instant, settings: &Settings, threshold: u32) {
        if now.duration_since(self.window_start) >= settings.window {
            self.window_start = now;
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= threshold && self.locked(now).is_none() {
            self.locked_until = Some(now + settings.lockout);
        }
    }
}

/// The failure counts, shared by every request.
#[derive(Debug)]
pub struct Throttle {
    settings: Settings,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    addresses: HashMap<IpAddr, Record>,
    users: HashMap<String, Record>,
}

/// The key an address is counted under: IPv4 as is (also when mapped into IPv6), IPv6 by its /64.
fn key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

impl Throttle {
    /// With the given thresholds.
    pub fn new(settings: Settings) -> Throttle {
        Throttle { settings, state: Mutex::new(State::default()) }
    }

    /// `Err(wait)` while `address` is locked out: refuse without looking at its credentials.
    pub fn admit_address(&self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.addresses.get(&key(address)).and_then(|r| r.locked(now)) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// `Err(wait)` when an unverified login for `user` from `address` must not be checked now: the user is under
    /// attack and this address has failed within the window.
    pub fn admit_unverified(&self, address: IpAddr, user: &str, now: Instant) -> Result<(), Duration> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(wait) = state.users.get(user).and_then(|r| r.locked(now)) else {
            return Ok(());
        };
        match state.addresses.get(&key(address)) {
            Some(record) if record.failed_recently(now, self.settings.window) => Err(wait),
            _ => Ok(()),
        }
    }

    /// Counts a failed login from `address`, and for `user` when it is a known user name.
    pub fn failed(&self, address: IpAddr, user: Option<&str>, now: Instant) {
        let settings = self.settings;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let address = key(address);
        if !state.addresses.contains_key(&address) && state.addresses.len() >= MAX_ADDRESSES {
            make_room(&mut state.addresses, now, settings.window);
        }
        if state.addresses.len() < MAX_ADDRESSES || state.addresses.contains_key(&address) {
            state.addresses.entry(address).or_insert_with(|| Record::new(now)).fail(
                now,
                &settings,
                settings.per_address,
            );
        } else {
            // Every remembered address is locked out: this one goes uncounted, and the bound on argon2
            // verifications in flight is what protects the service.
            tracing::warn!("too many addresses failing logins at once, not counting a new one");
        }
        if let Some(user) = user {
            match state.users.get_mut(user) {
                Some(record) => record.fail(now, &settings, settings.per_user),
                None => {
                    let mut record = Record::new(now);
                    record.fail(now, &settings, settings.per_user);
                    state.users.insert(user.to_string(), record);
                }
            }
        }
    }

    /// A correct login from `address` (not locked out): its failures are forgiven.
    pub fn succeeded(&self, address: IpAddr) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.addresses.remove(&key(address));
    }
}

/// Drops expired records; if none expired, the unlocked record with the oldest window.
fn make_room(addresses: &mut HashMap<IpAddr, Record>, now: Instant, window: Duration) {
    addresses.retain(|_, r| !r.expired(now, window));
    if addresses.len() < MAX_ADDRESSES {
        return;
    }
    let oldest = addresses.iter().filter(|(_, r)| r.locked(now).is_none()).min_by_key(|(_, r)| r.window_start);
    if let Some((&address, _)) = oldest {
        addresses.remove(&address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(Settings {
            per_address: 3,
            per_user: 5,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(300),
        })
    }

    #[test]
    fn an_address_is_locked_out_after_its_failures_and_a_success_clears_it() {
        let t = throttle();
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        t.failed(a, Some("office"), now);
        t.failed(a, Some("office"), now);
        t.succeeded(a);
        t.failed(a, Some("office"), now);
        t.failed(a, Some("office"), now);
        assert!(t.admit_address(a, now).is_ok());
        t.failed(a, Some("office"), now);
        assert!(t.admit_address(a, now).is_err());
        assert!(t.admit_address("10.0.0.2".parse().unwrap(), now).is_ok());
        assert!(t.admit_address(a, now + Duration::from_secs(301)).is_ok());
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let t = throttle();
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        t.failed(a, None, now);
        t.failed(a, None, now);
        t.failed(a, None, now + Duration::from_secs(61));
        assert!(t.admit_address(a, now + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn a_user_under_attack_is_refused_only_from_failed_addresses() {
        let t = throttle();
        let now = Instant::now();
        for i in 0..5 {
            t.failed(IpAddr::from([10, 0, 1, i]), Some("office"), now);
        }
        assert!(t.admit_unverified(IpAddr::from([10, 0, 1, 0]), "office", now).is_err());
        assert!(t.admit_unverified(IpAddr::from([10, 0, 2, 0]), "office", now).is_ok(), "a clean address");
        assert!(t.admit_unverified(IpAddr::from([10, 0, 1, 0]), "monitor", now).is_ok(), "another user");
    }

    #[test]
    fn ipv6_is_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let t = throttle();
        let now = Instant::now();
        for host in ["2001:db8::1", "2001:db8::2", "2001:db8::3"] {
            t.failed(host.parse().unwrap(), None, now);
        }
        assert!(t.admit_address("2001:db8::ffff".parse().unwrap(), now).is_err());
        assert!(t.admit_address("2001:db8:0:1::1".parse().unwrap(), now).is_ok());
        for _ in 0..3 {
            t.failed("::ffff:10.0.0.9".parse().unwrap(), None, now);
        }
        assert!(t.admit_address("10.0.0.9".parse().unwrap(), now).is_err());
    }

    #[test]
    fn the_address_map_stays_bounded() {
        let t = throttle();
        let now = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 100) {
            t.failed(IpAddr::from(i.to_be_bytes()), None, now);
        }
        assert!(t.state.lock().unwrap().addresses.len() <= MAX_ADDRESSES);
    }
}
