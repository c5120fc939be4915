-- Shared by the wrk scripts of bench/ (loaded with dofile): numbers the threads, counts
-- every response that is not 2xx, and prints one machine-readable line at the end:
-- WRKJSON {"requests", "duration_us", "non_2xx", "socket_errors", "timeouts", latency
-- percentiles in µs, "mean_us"}.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_no", #threads)
end

non_2xx = 0

function response(status, headers, body)
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non_2xx") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,'
      .. '"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,'
      .. '"mean_us":%.1f}\n',
    summary.requests, summary.duration, bad, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean
  ))
end
