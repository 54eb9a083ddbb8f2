//! `/alerts`: firing and resolved alerts and the rules, from the same
//! function as its JSON twin `/api/v1/alerts` ([`crate::alerts::alert_list`]).

use super::{Nav, PageError, PageViewer, ago, badge, esc, layout, time_cell};
use crate::AppState;
use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;
use plumb_model::alerts::AlertState;
use std::fmt::Write as _;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/alerts", get(alerts_page))
}

async fn alerts_page(
    _: PageViewer,
    State(state): State<AppState>,
) -> Result<Html<String>, PageError> {
    let list = state.db.read(crate::alerts::alert_list).await?;
    let firing = list
        .alerts
        .iter()
        .filter(|a| a.state == AlertState::Firing)
        .count();
    let mut b = String::with_capacity(8192);
    let _ = write!(b, "<h1>Alerts</h1><p>{firing} firing.</p>");
    if list.alerts.is_empty() {
        b.push_str("<p>No alerts have fired.</p>");
    } else {
        b.push_str(
            "<table id=\"alerts\"><thead><tr><th scope=\"col\">Alert</th><th scope=\"col\">State</th>\
<th scope=\"col\">Severity</th><th scope=\"col\">Summary</th><th scope=\"col\">Labels</th>\
<th scope=\"col\">Since</th><th scope=\"col\">Ended</th><th scope=\"col\">Last notified</th></tr></thead><tbody>",
        );
        for a in &list.alerts {
            let labels = a
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            let _ = write!(
                b,
                "<tr><td>{name}</td><td>{state}</td><td>{sev}</td><td>{summary}<br><span class=\"muted\">{desc}</span></td>\
<td class=\"mono\">{labels}</td><td title=\"{since_full}\">{since}</td><td>{ended}</td><td>{notified}</td></tr>",
                name = esc(&a.name),
                state = badge(a.state.as_str()),
                sev = badge(a.severity.as_str()),
                summary = esc(&a.annotations.summary),
                desc = esc(&a.annotations.description),
                labels = esc(&labels),
                since_full = a.starts_at.to_rfc3339(),
                since = ago(a.starts_at),
                ended = a.ends_at.map(time_cell).unwrap_or_else(|| "—".into()),
                notified = a.last_notified.map(time_cell).unwrap_or_else(|| "—".into()),
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("<h2>Rules</h2>");
    if list.rules.is_empty() {
        b.push_str("<p>No rules are loaded.</p>");
    } else {
        b.push_str(
            "<table id=\"rules\"><thead><tr><th scope=\"col\">Rule</th><th scope=\"col\">Alert</th>\
<th scope=\"col\">Severity</th><th scope=\"col\">Condition</th><th scope=\"col\" class=\"num\">For</th><th scope=\"col\">Enabled</th></tr></thead><tbody>",
        );
        for r in &list.rules {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                esc(&r.rule),
                esc(&r.alertname),
                badge(r.severity.as_str()),
                esc(&r.condition),
                super::human_duration((r.for_s * 1e9) as i64),
                if r.enabled { "yes" } else { "no" }
            );
        }
        b.push_str("</tbody></table>");
    }
    Ok(layout("Alerts", Nav::Alerts, "", &b))
}
