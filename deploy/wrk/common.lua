-- Shared by the wrk scripts beside it: realistic events, and counts of the
-- status codes of the responses in each wrk thread, printed with the latency
-- percentiles when wrk is done. The last line is one machine-readable
-- "RESULT key=value ..." line, which deploy/bench parses.
--
-- Environment:
--   API_KEY    the key sent (default: the dev key)
--   WRK_DATA   realistic (default) or identical: the same event every time,
--              a best case that real games never send
--
-- Realistic data: 20,000 players (user_id, 8 hex digits) and 10,000 sessions
-- (session_id, 64 hex digits), the same pools in every wrk thread; 10 event
-- types, 3 applications, 4 versions, 5 platforms; a value object of 60 to 120
-- bytes of JSON; the keys in the order the Godot plugin writes them.

api_key = os.getenv("API_KEY") or "I-am-an-unsecure-dev-key-REPLACE_ME"
identical = os.getenv("WRK_DATA") == "identical"

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
function event(event_type, application, version, platform, user_id, session_id, value)
  return '{"event_type":"' .. event_type .. '","application":"' .. application .. '","version":"' .. version ..
    '","platform":"' .. platform .. '","user_id":"' .. user_id .. '","session_id":"' .. session_id ..
    '","value":' .. value .. ',"api_key":"' .. api_key .. '"}'
end

-- The identical event of the best case.
function identical_event()
  return event("single", "wrk", "1.0.3", "Linux", "7acafdde",
    "1df3ede7c90f9e9d8738aa6cdc1a75ec437da75b0536301b273b9d09a4d017ee", '{"level":3}')
end

players, session_pool = 20000, 10000
local types = { "startup", "level_start", "level_complete", "death", "item_pickup", "purchase",
  "achievement", "settings", "error", "shutdown" }
local applications = { "Cave Runner", "Star Farm", "Tiny Tactics" }
local versions = { "1.0.0", "1.0.3", "1.1.0", "2.0.0-beta" }
local platforms = { "Windows", "Linux", "macOS", "Android", "Web" }
local users, sessions = {}, {}

local function hex(n)
  local t = {}
  for i = 1, n do t[i] = string.format("%x", math.random(0, 15)) end
  return table.concat(t)
end

-- The pools are drawn from a fixed seed, so every thread (and every run)
-- has the same players; what each thread picks from them is its own.
local function pools()
  if users[1] then return end
  math.randomseed(20261130)
  for i = 1, players do users[i] = hex(8) end
  for i = 1, session_pool do sessions[i] = hex(64) end
  math.randomseed(os.time() * 100 + (thread_id or 0))
end

-- value returns a JSON object of 60 to 120 bytes.
local function value()
  local v = string.format('{"level":%d,"time":%.2f,"score":%d,"hp":%d,"note":"', math.random(1, 60),
    math.random() * 600, math.random(0, 99999), math.random(0, 100))
  local want = math.random(60, 120)
  if #v + 2 < want then v = v .. string.rep("x", want - #v - 2) end
  return v .. '"}'
end

-- player returns a random player: the index of a user_id and its session.
function player()
  pools()
  local p = math.random(1, players)
  return p
end

-- realistic_event returns one event of player p (a random one if nil).
function realistic_event(p)
  p = p or player()
  local a = 1 + p % #applications
  return event(types[math.random(#types)], applications[a], versions[1 + (p * 7) % #versions],
    platforms[1 + (p * 13) % #platforms], users[p], sessions[1 + p % session_pool], value())
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
