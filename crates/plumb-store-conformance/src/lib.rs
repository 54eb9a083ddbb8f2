/*!
The behaviour every store backend must show, as one suite of cases, each a
function of a [`Harness`] that opens connections to one fresh, empty store.
A backend runs the whole suite from one of its own test files:

```ignore
struct Sqlite(tempfile::TempDir);
impl plumb_store_conformance::Harness for Sqlite {
    fn open(&self) -> Box<dyn plumb_store::Backend> {
        Box::new(plumb_store::Store::open(self.0.path()).unwrap())
    }
}
plumb_store_conformance::suite!(Sqlite(tempfile::tempdir().unwrap()));
```

[`suite!`] makes one `#[test]` per case, named after it, each with its own
fresh store, so a failing case is named and the others still run. The cases
use only the traits of [`plumb_store::Backend`], never a backend's own
methods, so passing them is what "a backend" means.
*/

pub mod alerts;
pub mod benches;
pub mod clocks;
pub mod copy;
pub mod health;
pub mod import;
pub mod insights;
pub mod leases;
pub mod nodes;
pub mod retention;
pub mod runs;
pub mod samples;
pub mod telemetry;
pub mod throttles;
pub mod timeline;
pub mod tokens;

/// One fresh, empty store of the backend under test.
pub trait Harness {
    /// A new connection to this harness's store (read-write). Called more
    /// than once by cases that check what survives a reconnection.
    fn open(&self) -> Box<dyn plumb_store::Backend>;
}

/// One `#[test]` per conformance case, each with a fresh store made by
/// `$fresh` (an expression giving a [`Harness`]).
#[macro_export]
macro_rules! suite {
    ($fresh:expr) => {
        $crate::suite!(@cases $fresh;
            runs::a_run_reads_back_as_written,
            runs::a_run_sent_twice_is_stored_once_and_the_later_state_wins,
            runs::a_skipped_start_reads_back_with_its_overlap_wait,
            runs::references_resolve_and_bad_ones_say_what_kind_of_failure,
            runs::lists_filter_by_name_state_and_tag_newest_first,
            runs::fingerprints_are_stored_once_by_hash,
            runs::output_replays_in_order_and_search_finds_every_matching_line,
            runs::search_does_not_depend_on_how_output_was_chunked,
            runs::pages_follow_each_other_without_gaps_or_repeats,
            runs::attached_snapshots_read_back_with_the_run_and_survive_its_later_records,
            runs::run_counts_equal_a_direct_count_for_every_filter,
            runs::run_counts_of_nothing_and_of_a_single_run,
            runs::run_counts_follow_a_run_whose_state_changes,
            runs::job_runs_are_the_newest_of_a_name_oldest_first,
            import::a_body_imports_once_and_a_repeat_stores_nothing_new,
            import::a_late_running_record_never_replaces_a_finished_one,
            import::a_corrupt_frame_is_named_and_nothing_is_stored,
            import::chunks_before_any_run_record_are_refused,
            telemetry::retried_records_are_stored_once_however_batched,
            telemetry::overlaps_across_statement_sizes_and_repeats_within_a_request_are_stored_once,
            telemetry::search_finds_log_lines_by_run_and_by_source,
            telemetry::spans_are_found_by_name_service_and_attributes_and_traces_by_prefix,
            telemetry::a_trace_holds_its_spans_as_a_tree_and_the_logs_made_in_it,
            telemetry::spans_and_metric_points_are_stored_once_and_found_by_run,
            telemetry::big_batches_are_cut_into_several_chunks,
            nodes::heartbeats_keep_a_window_and_transitions_a_history,
            nodes::transitions_between_are_the_ones_a_range_shades,
            nodes::fingerprint_changes_are_kept_per_node_newest_first_and_bounded,
            nodes::preflights_round_trip_newest_first_and_are_bounded,
            nodes::software_hash_is_stored_with_the_fingerprint,
            alerts::alerts_round_trip_and_resolved_history_is_bounded,
            alerts::disk_samples_are_thinned_and_bounded,
            tokens::tokens_round_trip_by_hash,
            tokens::a_token_added_twice_is_a_conflict,
            tokens::sessions_end_with_their_token,
            insights::failed_runs_are_queued_by_the_trigger_and_grouped_once,
            insights::status_new_then_ongoing_resolved_and_regressed,
            insights::otlp_occurrences_are_idempotent_by_key,
            insights::duration_stats_use_the_latest_successful_runs,
            insights::slow_runs_need_history_and_exceed_the_p95,
            insights::every_failed_state_is_queued_for_grouping_and_no_other,
            insights::occurrence_times_are_a_groups_own_in_a_window,
            insights::error_day_counts_are_each_groups_occurrences_per_utc_day,
            clocks::one_row_per_probe_latest_per_node_and_a_day_kept,
            health::health_reads_back_newest_first_or_since_and_is_bounded_per_node,
            benches::benches_read_back_latest_per_node_before_a_time_and_are_bounded,
            samples::node_samples_keep_the_highest_per_interval_bounded_and_sparks_for_every_node,
            timeline::logs_and_spans_are_found_by_time_window_from_every_source,
            throttles::never_more_than_n_holders_and_the_queue_is_first_come_first_served,
            throttles::an_expired_lease_frees_its_slot_and_an_expired_waiter_leaves_the_queue,
            throttles::release_is_idempotent_and_an_unknown_holder_releases_nothing,
            throttles::bad_requests_are_bad_input_and_a_different_n_is_a_conflict_naming_both,
            leases::one_holder_at_a_time_and_an_expired_lease_passes_on,
            copy::every_table_and_column_is_copied_or_skipped_with_a_reason,
            copy::raw_rows_page_in_key_order_and_putting_them_again_inserts_nothing,
            copy::runs_put_raw_are_queued_for_grouping_only_as_the_queue_says,
            retention::output_logs_and_spans_older_than_the_horizon_go_and_runs_stay
        );
    };
    (@cases $fresh:expr; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let harness = $fresh;
                $crate::$module::$case(&harness);
            }
        )*
    };
}

#[cfg(test)]
mod tests {
    /// Every public case function is in [`suite!`], so a case written and
    /// forgotten there fails here instead of never running.
    #[test]
    fn every_case_is_in_the_suite() {
        let lib = include_str!("lib.rs");
        let modules = [
            ("alerts", include_str!("alerts.rs")),
            ("benches", include_str!("benches.rs")),
            ("clocks", include_str!("clocks.rs")),
            ("copy", include_str!("copy.rs")),
            ("health", include_str!("health.rs")),
            ("import", include_str!("import.rs")),
            ("insights", include_str!("insights.rs")),
            ("leases", include_str!("leases.rs")),
            ("nodes", include_str!("nodes.rs")),
            ("runs", include_str!("runs.rs")),
            ("samples", include_str!("samples.rs")),
            ("telemetry", include_str!("telemetry.rs")),
            ("throttles", include_str!("throttles.rs")),
            ("timeline", include_str!("timeline.rs")),
            ("tokens", include_str!("tokens.rs")),
        ];
        let mut cases = 0;
        for (module, text) in modules {
            for item in text.split("pub fn ").skip(1) {
                let (name, rest) = item.split_once('(').unwrap();
                let params = &rest[..rest.find(')').unwrap()];
                if !params.contains("&dyn Harness") {
                    continue;
                }
                cases += 1;
                assert!(
                    lib.contains(&format!("{module}::{name},"))
                        || lib.contains(&format!("{module}::{name}\n")),
                    "{module}::{name} is not listed in suite!"
                );
            }
        }
        assert!(cases >= 30, "only {cases} cases found");
    }
}
