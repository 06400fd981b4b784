// Hand-kept in step with migrations/; `log_entries` is partitioned, its key is (id, received_at),
// but `id` alone is unique (one sequence), which is what diesel needs for lookups.

diesel::table! {
    log_entries (id) {
        id -> Int8,
        received_at -> Timestamptz,
        logged_at -> Timestamptz,
        severity -> Text,
        message -> Text,
        source -> Nullable<Text>,
        analysis_task_id -> Nullable<Uuid>,
        anomaly_score -> Nullable<Float8>,
        is_anomaly -> Nullable<Bool>,
        summary -> Nullable<Text>,
        template_id -> Nullable<Int8>,
        analyzed_at -> Nullable<Timestamptz>,
        attributes -> Nullable<Jsonb>,
        prior_score -> Nullable<Float4>,
    }
}

diesel::table! {
    tasks (id) {
        id -> Uuid,
        task_name -> Text,
        queue -> Text,
        status -> Text,
        args -> Jsonb,
        result -> Nullable<Jsonb>,
        error -> Nullable<Text>,
        attempts -> Int4,
        published_at -> Nullable<Timestamptz>,
        publish_error -> Nullable<Text>,
        publish_attempts -> Int4,
        created_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    templates (id) {
        id -> Int8,
        template_key -> Text,
        template -> Text,
        count -> Int8,
        first_seen -> Timestamptz,
        last_seen -> Timestamptz,
        embedding -> Nullable<Array<Float4>>,
        label -> Nullable<Text>,
        labelled_at -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
        windows -> Int4,
        max_window_lines -> Int8,
        episodes -> Int4,
        level_episodes -> Int4,
        label_max_level -> Nullable<Text>,
        presence_window -> Nullable<Int8>,
        window_lines -> Int8,
        level_last_seen -> Nullable<Timestamptz>,
        new_after_warmup -> Bool,
        novelty -> Float4,
        window_bits -> Int8,
        arrivals -> Array<Int8>,
        level_arrivals -> Array<Int8>,
        born_settled -> Float4,
    }
}

diesel::table! {
    pattern_detections (id) {
        id -> Int8,
        kind -> Text,
        window_start -> Timestamptz,
        window_end -> Timestamptz,
        source -> Text,
        severity -> Text,
        details -> Jsonb,
        log_entry_ids -> Array<Int8>,
        task_id -> Nullable<Uuid>,
        detected_at -> Timestamptz,
    }
}

diesel::table! {
    alerts (id) {
        id -> Int8,
        dedup_key -> Text,
        kind -> Text,
        channel -> Text,
        status -> Text,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        payload -> Jsonb,
        log_entry_id -> Nullable<Int8>,
        pattern_detection_id -> Nullable<Int8>,
        task_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    periodic_tasks (id) {
        id -> Int8,
        name -> Text,
        task -> Text,
        args -> Jsonb,
        interval_every -> Nullable<Int4>,
        interval_period -> Nullable<Text>,
        cron -> Nullable<Text>,
        timezone -> Text,
        enabled -> Bool,
        last_run_at -> Nullable<Timestamptz>,
        next_run_at -> Nullable<Timestamptz>,
        total_run_count -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    api_keys (key_id) {
        key_id -> Text,
        secret -> Text,
        active -> Bool,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        scopes -> Array<Text>,
    }
}

diesel::table! {
    /// Shipper tokens, by the SHA-256 of the token (`crate::api_tokens`).
    api_tokens (name) {
        name -> Text,
        token_sha256 -> Bytea,
        scopes -> Array<Text>,
        created_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    /// Written with raw SQL (`crate::signatures`); declared for completeness.
    used_signatures (mac) {
        mac -> Bytea,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    /// Written with raw SQL (`crate::source_levels`); declared for completeness.
    source_levels (source) {
        source -> Text,
        lines -> Int8,
        trouble -> Int8,
    }
}

diesel::table! {
    /// Written with raw SQL (`crate::stream_births`); declared for completeness.
    stream_births (id) {
        id -> Bool,
        lines -> Int8,
        births -> Array<Int8>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(log_entries, tasks, templates);
