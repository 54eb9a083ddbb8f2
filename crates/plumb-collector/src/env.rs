//! Environments across the fleet: which nodes' software differs from
//! their group's.
//!
//! | method, path | role | what |
//! |---|---|---|
//! | `GET /api/v1/env/drift` | viewer | a [`DriftView`] of the nodes with the labels `label=k=v,k2=v2` (all nodes without) |
//!
//! Each node's agent sends its software fingerprint when it changes; the
//! store keeps the latest per node (by content hash). Drift is computed
//! per request from the distinct fingerprints, which are few even on a
//! large fleet, by [`plumb_model::env::drift`].

use crate::auth::Viewer;
use crate::{ApiError, AppState};
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use plumb_model::env::{Drift, components};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/env/drift", get(drift_route))
}

/// Drift over a group of nodes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DriftView {
    /// The labels the nodes were chosen by (empty: every node).
    pub labels: BTreeMap<String, String>,
    /// What differs between them.
    pub drift: Drift,
    /// Nodes of the group that have not sent a fingerprint yet (an agent
    /// sends one within seconds of starting), so they are not compared.
    pub without_fingerprint: Vec<String>,
}

/// Parses `k=v,k2=v2` (the `label` parameter; `--label` flags joined).
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                out.insert(k.trim().to_string(), v.trim().to_string());
            }
            _ => return Err(format!("label `{part}`: expected KEY=VALUE")),
        }
    }
    Ok(out)
}

/// Drift among the stored nodes whose labels include `labels`.
pub fn fleet_drift(
    store: &dyn plumb_store::Backend,
    labels: &BTreeMap<String, String>,
) -> plumb_store::Result<DriftView> {
    let rows = store.nodes()?;
    let mut by_hash: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    let mut chosen: Vec<(String, String)> = Vec::new();
    let mut without = Vec::new();
    for r in rows {
        if !labels
            .iter()
            .all(|(k, v)| r.report.labels.get(k) == Some(v))
        {
            continue;
        }
        let Some(hash) = r.fingerprint else {
            without.push(r.name);
            continue;
        };
        if !by_hash.contains_key(&hash) {
            match store.get_fingerprint(&hash)? {
                Some(fp) => {
                    by_hash.insert(hash.clone(), components(&fp));
                }
                None => {
                    without.push(r.name);
                    continue;
                }
            }
        }
        chosen.push((r.name, hash));
    }
    // Nodes with one fingerprint share one map: grouping them is a
    // pointer comparison.
    let nodes: Vec<(&str, &BTreeMap<String, String>)> = chosen
        .iter()
        .map(|(name, hash)| (name.as_str(), &by_hash[hash]))
        .collect();
    Ok(DriftView {
        labels: labels.clone(),
        drift: plumb_model::env::drift(&nodes),
        without_fingerprint: without,
    })
}

/// Drift within one group of nodes (those with the same labels).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupDrift {
    /// The group's labels (`k=v,...`; empty for nodes without labels).
    pub group: String,
    /// What differs between its nodes.
    pub drift: Drift,
}

/// The drift of every group of `rows` (nodes with the same labels) whose
/// nodes do not all have one fingerprint; groups that agree cost nothing.
pub fn drift_by_group(
    store: &dyn plumb_store::Backend,
    rows: &[plumb_store::nodes::NodeRow],
) -> plumb_store::Result<Vec<GroupDrift>> {
    let mut groups: BTreeMap<String, Vec<&plumb_store::nodes::NodeRow>> = BTreeMap::new();
    for r in rows {
        groups
            .entry(crate::nodes::group_key(&r.report.labels))
            .or_default()
            .push(r);
    }
    let mut by_hash: HashMap<String, Option<BTreeMap<String, String>>> = HashMap::new();
    let mut out = Vec::new();
    for (group, members) in groups {
        let distinct: std::collections::HashSet<&str> = members
            .iter()
            .filter_map(|r| r.fingerprint.as_deref())
            .collect();
        if distinct.len() < 2 {
            continue;
        }
        for h in &distinct {
            if !by_hash.contains_key(*h) {
                let c = store.get_fingerprint(h)?.map(|fp| components(&fp));
                by_hash.insert(h.to_string(), c);
            }
        }
        let nodes: Vec<(&str, &BTreeMap<String, String>)> = members
            .iter()
            .filter_map(|r| {
                let c = by_hash.get(r.fingerprint.as_deref()?)?.as_ref()?;
                Some((r.name.as_str(), c))
            })
            .collect();
        let drift = plumb_model::env::drift(&nodes);
        if !drift.items.is_empty() {
            out.push(GroupDrift { group, drift });
        }
    }
    Ok(out)
}

/// A change of one node's software, its components compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeEnvChange {
    /// The node.
    pub node: String,
    /// When the heartbeat with the new fingerprint arrived.
    pub at: plumb_model::Timestamp,
    /// What changed, by component (empty when only parts that are not
    /// components changed, such as the hardware).
    pub changes: Vec<plumb_model::env::Change>,
    /// Whether a fingerprint was no longer stored, so the change is known
    /// only by its hashes.
    pub unknown: bool,
}

/// Software changes (of `node`, or every node) that arrived from `since`
/// on, newest first, at most `limit`, each compared by component. A
/// fingerprint read once serves every change that names it.
pub fn env_changes(
    store: &dyn plumb_store::Backend,
    node: Option<&str>,
    since: plumb_model::Timestamp,
    limit: usize,
) -> plumb_store::Result<Vec<NodeEnvChange>> {
    let mut by_hash: HashMap<String, Option<BTreeMap<String, String>>> = HashMap::new();
    let mut out = Vec::new();
    for c in store.env_changes(node, since, limit)? {
        for h in [&c.old, &c.new] {
            if !by_hash.contains_key(h) {
                let comps = store.get_fingerprint(h)?.map(|fp| components(&fp));
                by_hash.insert(h.clone(), comps);
            }
        }
        let (before, after) = (&by_hash[&c.old], &by_hash[&c.new]);
        let (changes, unknown) = match (before, after) {
            (Some(b), Some(a)) => (plumb_model::env::changes(b, a), false),
            _ => (Vec::new(), true),
        };
        out.push(NodeEnvChange {
            node: c.node,
            at: c.at,
            changes,
            unknown,
        });
    }
    Ok(out)
}

/// One change as a line of text: the components that changed, or why
/// they are not known.
pub fn describe_change(c: &NodeEnvChange) -> String {
    if c.unknown {
        "a new fingerprint (the previous one is no longer stored)".to_string()
    } else if c.changes.is_empty() {
        "a new fingerprint, no software component changed (hardware or plumb's own libraries)"
            .to_string()
    } else {
        let parts: Vec<String> = c.changes.iter().map(|x| x.to_string()).collect();
        parts.join("; ")
    }
}

#[derive(Debug, Deserialize)]
struct DriftParams {
    #[serde(default)]
    label: String,
}

async fn drift_route(
    _: Viewer,
    State(state): State<AppState>,
    Query(p): Query<DriftParams>,
) -> Result<Json<DriftView>, ApiError> {
    let labels = parse_labels(&p.label).map_err(ApiError::BadRequest)?;
    let view = state
        .db
        .read(move |store| fleet_drift(store, &labels))
        .await?;
    Ok(Json(view))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_and_bad_ones_are_named() {
        let l = parse_labels("role=worker, zone = a").unwrap();
        assert_eq!(l["role"], "worker");
        assert_eq!(l["zone"], "a");
        assert!(parse_labels("").unwrap().is_empty());
        let e = parse_labels("role").unwrap_err();
        assert!(e.contains("`role`"), "{e}");
        assert!(parse_labels("=x").is_err());
    }
}
