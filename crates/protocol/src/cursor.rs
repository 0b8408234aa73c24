//! The exchange cursor: an opaque string on the wire, here a transaction-snapshot watermark tied to the one
//! database that issued it (BRIEF §4.1 and §4.5).

use std::fmt;
use std::str::FromStr;

/// Which database issued a cursor. A cluster rebuilt or restored from a dump has another system identifier or
/// database oid; a sync schema reinstalled by `clean` has another epoch. Any of these refuses old cursors.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DbIdentity {
    /// `pg_control_system().system_identifier`.
    pub system_id: u64,
    /// The database's oid.
    pub database_oid: u32,
    /// A random token chosen when the sync schema was installed.
    pub epoch: String,
}

/// A point in one database's history: everything committed and visible in `snapshot` has been delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The database that issued the cursor.
    pub issuer: DbIdentity,
    /// A `pg_snapshot` in its text form, `xmin:xmax:xip1,xip2,...`.
    pub snapshot: String,
}

/// Why a cursor string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not a cursor this version writes.
    #[error("malformed cursor, pass \"\" for a full exchange")]
    Malformed,
    /// Issued by another database, a rebuilt cluster or before the sync schema was reinstalled.
    #[error("cursor belongs to another database or an earlier sync schema, fall back to a full exchange")]
    Foreign,
    /// Ours in form, but not a cursor this shop issued and still keeps: ahead of anything it issued (forged), or
    /// older than the cursor the office confirmed (an office restored from a backup).
    #[error(
        "cursor was not issued by this shop or is older than the one the office confirmed, fall back to a full exchange"
    )]
    NotIssued,
}

const PREFIX: &str = "bs1";

impl Cursor {
    /// Parses a cursor string; `""` means "no cursor" (a full exchange) and gives `Ok(None)`.
    pub fn parse_optional(text: &str) -> Result<Option<Cursor>, CursorError> {
        if text.is_empty() { Ok(None) } else { text.parse().map(Some) }
    }

    /// The cursor, if `identity` issued it; [`CursorError::Foreign`] otherwise.
    pub fn check_issuer(self, identity: &DbIdentity) -> Result<Cursor, CursorError> {
        if &self.issuer == identity { Ok(self) } else { Err(CursorError::Foreign) }
    }

    /// The snapshot's `xmax`: no transaction at or above it is visible in the snapshot.
    pub fn xmax(&self) -> u64 {
        self.snapshot.split(':').nth(1).and_then(|x| x.parse().ok()).unwrap_or(0)
    }

    /// The snapshot's `xmin`: every transaction below it is visible in the snapshot.
    pub fn xmin(&self) -> u64 {
        // The snapshot was validated when the cursor was built or parsed.
        self.snapshot.split(':').next().and_then(|x| x.parse().ok()).unwrap_or(0)
    }
}

/// `system_id/database_oid/epoch`, as `status` reports it and the office records it at `branch init`.
impl fmt::Display for DbIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.system_id, self.database_oid, self.epoch)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.issuer;
        write!(f, "{PREFIX}/{}/{}/{}/{}", i.system_id, i.database_oid, i.epoch, self.snapshot)
    }
}

impl FromStr for Cursor {
    type Err = CursorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.split('/');
        let (Some(PREFIX), Some(sys), Some(oid), Some(epoch), Some(snapshot), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(CursorError::Malformed);
        };
        let system_id = sys.parse().map_err(|_| CursorError::Malformed)?;
        let database_oid = oid.parse().map_err(|_| CursorError::Malformed)?;
        if epoch.is_empty() || epoch.len() > 64 || !epoch.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CursorError::Malformed);
        }
        if !valid_snapshot(snapshot) {
            return Err(CursorError::Malformed);
        }
        Ok(Cursor {
            issuer: DbIdentity { system_id, database_oid, epoch: epoch.to_owned() },
            snapshot: snapshot.to_owned(),
        })
    }
}

/// `xmin:xmax:xip,...` with `xmin <= every xip < xmax`, as PostgreSQL's `pg_snapshot` input demands.
fn valid_snapshot(text: &str) -> bool {
    let mut parts = text.split(':');
    let (Some(xmin), Some(xmax), Some(xips), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(xmin), Ok(xmax)) = (xmin.parse::<u64>(), xmax.parse::<u64>()) else {
        return false;
    };
    if xmin == 0 || xmin > xmax {
        return false;
    }
    xips.is_empty() || xips.split(',').all(|x| x.parse::<u64>().is_ok_and(|x| x >= xmin && x < xmax))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> DbIdentity {
        DbIdentity { system_id: 7312345678901234567, database_oid: 16384, epoch: "0a1b2c".into() }
    }

    #[test]
    fn round_trips() {
        let c = Cursor { issuer: identity(), snapshot: "10:20:12,15".into() };
        let text = c.to_string();
        assert_eq!(text.parse::<Cursor>(), Ok(c.clone()));
        assert_eq!(c.xmin(), 10);
        assert_eq!(c.xmax(), 20);
        assert_eq!(Cursor::parse_optional(""), Ok(None));
    }

    #[test]
    fn refuses_malformed_and_foreign() {
        for bad in ["x", "bs1/1/2/ab", "bs1/1/2/ab/10:5:", "bs1/1/2/zz/1:2:", "bs1/1/2/ab/5:9:3", "bs1/a/2/ab/1:2:"] {
            assert_eq!(bad.parse::<Cursor>(), Err(CursorError::Malformed), "{bad}");
        }
        let c = Cursor { issuer: identity(), snapshot: "10:20:".into() };
        let other = DbIdentity { database_oid: 1, ..identity() };
        assert_eq!(c.clone().check_issuer(&other), Err(CursorError::Foreign));
        assert!(c.check_issuer(&identity()).is_ok());
    }
}
