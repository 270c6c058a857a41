-- Shared by the wrk scripts beside it: counts the status codes of the
-- responses in each wrk thread and prints them, with the latency
-- percentiles, when wrk is done. The last line is one machine-readable
-- "RESULT key=value ..." line, which deploy/bench parses.
--
-- Environment: API_KEY (default: the dev key).

api_key = os.getenv("API_KEY") or "I-am-an-unsecure-dev-key-REPLACE_ME"

-- events_per_request is set by each script (0 when it varies);
-- sent_events counts the events of the requests a dynamic script made.
events_per_request = 0
sent_events = 0
statuses = {}

local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("thread_id", next_id)
  table.insert(threads, thread)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

-- event returns one event object as JSON, fields in the order the Godot
-- plugin writes them; value is JSON text.
function event(event_type, user_id, session_id, value)
  return '{"event_type":"' .. event_type .. '","application":"wrk","version":"1.0.3",' ..
    '"platform":"Linux","user_id":"' .. user_id .. '","session_id":"' .. session_id ..
    '","value":' .. value .. ',"api_key":"' .. api_key .. '"}'
end

function done(summary, latency, requests)
  local counts, ok, not_ok, sent = {}, 0, 0, 0
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
    sent = sent + (t:get("sent_events") or 0)
  end
  local codes = {}
  for status, n in pairs(counts) do
    table.insert(codes, status)
    if status >= 200 and status < 300 then ok = ok + n else not_ok = not_ok + n end
  end
  table.sort(codes)
  for _, status in ipairs(codes) do
    io.write(string.format("status %d: %d\n", status, counts[status]))
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d n204=%d non2xx=%d timeouts=%d connect_errors=%d read_errors=%d write_errors=%d p50_us=%d p99_us=%d events_per_request=%d sent_events=%d\n",
    summary.requests, summary.duration, counts[204] or 0, not_ok, e.timeout, e.connect, e.read, e.write,
    latency:percentile(50), latency:percentile(99), events_per_request, sent))
end
