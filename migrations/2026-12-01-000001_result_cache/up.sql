-- The result cache (README, "Result cache"). `cache_key` is set at submit on a job whose result
-- may be shared: it named its seed, so its result is a function of the request alone. The
-- worker that computes such a job stores the result under that key in Redis; a later identical
-- submit is answered from there. `from_cache` marks a result that was served so, not computed.
ALTER TABLE simulations ADD COLUMN cache_key text;
ALTER TABLE simulation_results ADD COLUMN from_cache boolean NOT NULL DEFAULT false;
