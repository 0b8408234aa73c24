//! Opens connections with the session settings that make every value's text form exact and the same on every
//! side: ISO dates in UTC, shortest-exact floats, hex bytea, standard strings.

use tokio_postgres::{Client, NoTls};

use crate::error::{Error, Result};

/// Settings applied to every connection of the sync layer.
pub const SESSION_SETTINGS: &str = "SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'; SET IntervalStyle = 'postgres'; \
     SET extra_float_digits = 3; SET bytea_output = 'hex'; SET standard_conforming_strings = on; \
     SET client_encoding = 'UTF8'";

/// Connects to `conninfo` (a libpq key=value string or a `postgresql://` URL), drives the connection on the
/// tokio runtime and applies [`SESSION_SETTINGS`].
pub async fn connect(conninfo: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls).await.map_err(Error::Unavailable)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "database connection ended");
        }
    });
    client.batch_execute(SESSION_SETTINGS).await?;
    Ok(client)
}
