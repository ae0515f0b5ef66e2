-- wrk script for deploy/scripts/chaos: POSTs one small simulation per request, paced by
-- `delay()` so the load is steady (CHAOS_DELAY_MS between requests on each connection), and
-- appends the id of every accepted job (202) to a file per wrk thread, so the run can be
-- checked job by job against Postgres afterwards.

local body = os.getenv("CHAOS_BODY")
    or '{"starting_portfolio":1000000,"monthly_spending":4000,"years":30,"n_scenarios":1000}'
local pace = tonumber(os.getenv("CHAOS_DELAY_MS") or "50")
local out_dir = os.getenv("CHAOS_OUT") or "/tmp"

local counter = 0
local threads = {}

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function init(args)
  ids = io.open(out_dir .. "/accepted-" .. id .. ".txt", "a")
  statuses = {}
end

function request()
  return wrk.format("POST", "/simulations", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. os.getenv("CHAOS_API_KEY"),
  }, body)
end

function delay()
  return pace
end

function response(status, headers, response_body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 202 then
    local job = string.match(response_body, '"id"%s*:%s*"([0-9a-f%-]+)"')
    if job then
      ids:write(job, "\n")
      ids:flush()
    end
  end
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    local s = thread:get("statuses")
    if s then
      for code, n in pairs(s) do
        io.write(string.format("wrk: HTTP %s x %d\n", code, n))
      end
    end
  end
  io.write(string.format("wrk: submit latency p50 %.1f ms, p99 %.1f ms\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
