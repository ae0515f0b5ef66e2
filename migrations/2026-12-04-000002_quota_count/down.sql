DROP FUNCTION lock_quota_and_count_unfinished(text);
