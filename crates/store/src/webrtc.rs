//! `webrtc_settings`: the single row of STUN/TURN and WebSocket URL settings.

use crate::{Conn, DbError};

#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct WebrtcRow {
    pub stun_server: Option<String>,
    pub turn_server: Option<String>,
    pub turn_username: Option<String>,
    pub turn_password: Option<String>,
    pub ws_url: Option<String>,
}

pub async fn get(c: &mut Conn) -> Result<WebrtcRow, DbError> {
    let row: Option<WebrtcRow> = sqlx::query_as(
        "SELECT stun_server, turn_server, turn_username, turn_password, ws_url FROM webrtc_settings WHERE id = 1",
    )
    .fetch_optional(&mut *c)
    .await?;
    Ok(row.unwrap_or_default())
}

pub async fn put(c: &mut Conn, r: &WebrtcRow, now: i64) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO webrtc_settings (id, stun_server, turn_server, turn_username, turn_password, ws_url, updated_at) \
         VALUES (1, $1, $2, $3, $4, $5, $6) \
         ON CONFLICT (id) DO UPDATE SET stun_server = excluded.stun_server, turn_server = excluded.turn_server, \
           turn_username = excluded.turn_username, turn_password = excluded.turn_password, \
           ws_url = excluded.ws_url, updated_at = excluded.updated_at",
    )
    .bind(&r.stun_server)
    .bind(&r.turn_server)
    .bind(&r.turn_username)
    .bind(&r.turn_password)
    .bind(&r.ws_url)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(())
}
