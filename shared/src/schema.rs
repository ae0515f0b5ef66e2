// @generated automatically by Diesel CLI.

diesel::table! {
    api_keys (id) {
        id -> Int8,
        name -> Text,
        prefix -> Text,
        secret_sha256 -> Text,
        scopes -> Array<Text>,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    audit_logs (id, created_at) {
        id -> Int8,
        simulation_id -> Uuid,
        event -> Text,
        actor -> Text,
        request_id -> Nullable<Text>,
        data -> Jsonb,
        created_at -> Timestamptz,
        api_key_id -> Nullable<Int8>,
    }
}

diesel::table! {
    commit_barriers (backend_pid) {
        backend_pid -> Int4,
        flushes -> Int8,
    }
}

diesel::table! {
    queue_samples (sampled_at) {
        sampled_at -> Timestamptz,
        ready -> Int8,
        scheduled -> Int8,
        running -> Int8,
        dead -> Int8,
        workers_alive -> Int4,
    }
}

diesel::table! {
    simulation_results (simulation_id) {
        simulation_id -> Uuid,
        result -> Nullable<Jsonb>,
        worker -> Text,
        created_at -> Timestamptz,
        from_cache -> Bool,
        document -> Nullable<Json>,
    }
}

diesel::table! {
    simulations (id) {
        id -> Uuid,
        status -> Text,
        request -> Jsonb,
        seed -> Int8,
        request_id -> Nullable<Text>,
        idempotency_key -> Nullable<Text>,
        request_hash -> Nullable<Text>,
        attempts -> Int4,
        progress_done -> Int4,
        progress_total -> Int4,
        error -> Nullable<Text>,
        worker -> Nullable<Text>,
        heartbeat_at -> Nullable<Timestamptz>,
        cancel_requested -> Bool,
        not_before -> Nullable<Timestamptz>,
        success_probability -> Nullable<Float8>,
        created_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
        claim_token -> Nullable<Uuid>,
        owner -> Text,
        api_key_id -> Nullable<Int8>,
        cache_key -> Nullable<Text>,
        kind -> Text,
        parent_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    sweep_cells (sweep_id, cell_index) {
        sweep_id -> Uuid,
        cell_index -> Int4,
        unit_id -> Uuid,
        request -> Jsonb,
        summary -> Jsonb,
        result -> Jsonb,
        worker -> Text,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(simulation_results -> simulations (simulation_id));
diesel::joinable!(simulations -> api_keys (api_key_id));

diesel::allow_tables_to_appear_in_same_query!(
    api_keys,
    audit_logs,
    commit_barriers,
    queue_samples,
    simulation_results,
    simulations,
    sweep_cells,
);
