-- wrk report script: one machine-readable line at the end of a run.
-- Latency figures are microseconds (wrk's unit); duration is microseconds.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "E2E requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
