//! `/timeline`: the merged, clock-corrected timeline with one lane (column)
//! per host, from the same function as its JSON twin `/api/v1/timeline`
//! ([`crate::timeline::timeline`]). Each row is one event at its placed
//! time, in its host's lane; the raw timestamp and the correction are in
//! the cell's title. `~` marks an order within the clocks' error bounds,
//! `>` an event moved later by a causal constraint.

use super::{Nav, PageError, PageViewer, esc, layout};
use crate::AppState;
use crate::error::ApiError;
use crate::timeline::{TimelineQuery, TimelineView, timeline};
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Html;
use axum::routing::get;
use plumb_model::timeline::Kind;
use std::fmt::Write as _;

/// Events shown when the page asks for no limit.
const PAGE_LIMIT: usize = 500;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/timeline", get(timeline_page))
}

async fn timeline_page(
    _: PageViewer,
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Html<String>, PageError> {
    // Empty form fields mean "not given".
    let pairs: Vec<(String, String)> = pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    let mut q = TimelineQuery::from_params(&pairs).map_err(ApiError::BadRequest)?;
    if !pairs.iter().any(|(k, _)| k == "limit") {
        q.limit = PAGE_LIMIT;
    }
    let form = form(&pairs);
    let view = state.db.read(move |s| timeline(s, &q)).await?;
    Ok(layout(
        "Timeline",
        Nav::Timeline,
        "",
        &(form + &render(&view)),
    ))
}

fn form(pairs: &[(String, String)]) -> String {
    let v = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map_or(String::new(), |(_, v)| esc(v).into_owned())
    };
    format!(
        "<h1>Timeline</h1><form class=\"filters\" method=\"get\" action=\"/timeline\">\
<label>Since <input name=\"since\" value=\"{}\" placeholder=\"15m\"></label> \
<label>Until <input name=\"until\" value=\"{}\"></label> \
<label>Run <input name=\"run\" value=\"{}\"></label> \
<label>Host <input name=\"host\" value=\"{}\"></label> \
<label>Text <input name=\"grep\" value=\"{}\"></label> \
<button type=\"submit\">Show</button></form>",
        v("since"),
        v("until"),
        v("run"),
        v("host"),
        v("grep")
    )
}

/// The lanes table.
pub(crate) fn render(view: &TimelineView) -> String {
    let mut b = String::with_capacity(4096 + view.events.len() * 200);
    let mut lanes: Vec<&str> = view.events.iter().map(|p| p.event.host.as_str()).collect();
    lanes.sort_unstable();
    lanes.dedup();
    if view.events.is_empty() {
        b.push_str("<p>No events in this window.</p>");
        return b;
    }
    if view.left_out > 0 {
        let _ = write!(
            b,
            "<p class=\"note\">{} earlier events left out: narrow the window.</p>",
            view.left_out
        );
    }
    b.push_str("<table id=\"timeline\"><thead><tr><th scope=\"col\">Time (corrected)</th>");
    for l in &lanes {
        let measured = view
            .hosts
            .iter()
            .find(|h| h.host == *l)
            .and_then(|h| h.node.as_deref());
        let note = match measured {
            Some(n) => format!("corrected by node {}'s clock", esc(n)),
            None if *l == crate::timeline::COLLECTOR_HOST => "the reference clock".into(),
            None => "not measured: uncorrected".into(),
        };
        let _ = write!(
            b,
            "<th scope=\"col\" class=\"lane\" title=\"{note}\">{}</th>",
            esc(l)
        );
    }
    b.push_str("</tr></thead><tbody>");
    for p in &view.events {
        let e = &p.event;
        let flag = if p.ambiguous {
            "~"
        } else if p.shift_ns > 0 {
            "&gt;"
        } else {
            ""
        };
        let corr = if p.correction.unmeasured {
            "unmeasured".to_string()
        } else {
            format!(
                "offset {} ns ± {} ns",
                p.correction.offset_ns, p.correction.error_ns
            )
        };
        let title = format!(
            "raw {}, {corr}{}",
            plumb_model::Timestamp::from_nanos(e.raw_ns).to_rfc3339(),
            if p.shift_ns > 0 {
                format!(", moved {} ns later by causality", p.shift_ns)
            } else {
                String::new()
            }
        );
        let text = match (e.kind, e.end_ns, &e.trace_id) {
            (Kind::Span, Some(end), Some(t)) => format!(
                "{} [{}] <a href=\"/traces/{}\">trace</a>",
                esc(&e.text),
                super::human_duration(end - e.raw_ns),
                super::url_enc(t)
            ),
            _ => esc(&e.text).into_owned(),
        };
        let _ = write!(
            b,
            "<tr><td class=\"mono when\">{flag}{}</td>",
            p.at().to_rfc3339()
        );
        for l in &lanes {
            if *l == e.host {
                let _ = write!(
                    b,
                    "<td title=\"{}\"><span class=\"muted\">{}</span> <span class=\"mono\">{text}</span></td>",
                    esc(&title),
                    e.kind.as_str()
                );
            } else {
                b.push_str("<td></td>");
            }
        }
        b.push_str("</tr>");
    }
    b.push_str("</tbody></table>");
    if view.events.iter().any(|p| p.ambiguous) {
        b.push_str("<p class=\"muted\">~: the order against another host's event is within the clocks' error bounds.</p>");
    }
    if view.events.iter().any(|p| p.shift_ns > 0 && !p.ambiguous) {
        b.push_str("<p class=\"muted\">&gt;: placed later than its clock says, after the event that caused it (a receive after its send).</p>");
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_model::timeline::{Correction, Event, place};

    #[test]
    fn each_host_gets_a_lane_and_each_event_sits_in_its_own() {
        let placed = place(vec![
            (
                Event::line("web", 1_000, "GET <b>/x</b> plumb.msg.send=1"),
                Correction::exact(0),
            ),
            (
                Event::line("db", 5_000_001_500, "query plumb.msg.recv=1"),
                Correction::exact(5_000_000_000),
            ),
        ]);
        let view = TimelineView {
            events: placed,
            left_out: 0,
            hosts: Vec::new(),
        };
        let html = render(&view);
        assert_eq!(html.matches("class=\"lane\"").count(), 2, "{html}");
        // Lanes are by name: db first, web second.
        let rows: Vec<&str> = html.split("<tr>").skip(2).collect();
        assert!(
            rows[0].contains("<td></td><td title"),
            "web's event in the second lane: {}",
            rows[0]
        );
        assert!(
            rows[1].contains("query plumb.msg.recv=1</span></td><td></td>"),
            "{}",
            rows[1]
        );
        assert!(
            html.contains("GET &lt;b&gt;/x&lt;/b&gt;") && !html.contains("<b>"),
            "{html}"
        );
        assert!(html.contains("offset 5000000000 ns"), "{html}");
    }
}
